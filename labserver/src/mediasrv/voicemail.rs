//! Voicemail: deposit on no answer, busy or not registered, retrieval by DTMF, MWI (RFC 3842).
//!
//! **Deposit** (`vm-<user>@`, where the proxy sends unanswered calls): the user's recorded
//! greeting (or the `vm-unavailable` prompt; `#` skips it), a beep, then the caller's audio is
//! recorded into `<dir>/<user>/<id>.opus` (Ogg Opus, 16 kHz) until the caller hangs up, presses
//! `#`, or `max_message_secs` pass. Recordings shorter than `min_message_ms` are dropped. The
//! row (mailbox, caller, time, duration, file, new) is written once the file is complete; then
//! the user's devices get MWI.
//!
//! **Retrieval** (`voicemail@` or `vm@`; the mailbox is the caller's own user):
//!
//! | where | key | action |
//! |---|---|---|
//! | PIN prompt | digits then `#` | log in (`pin_tries` attempts, then goodbye) |
//! | main menu | `1` | listen to the messages (new first, oldest first) |
//! | main menu | `3` | record a new greeting (ends with `#` or hang-up) |
//! | main menu | `4` | set a new PIN: 1–16 digits then `#`, twice (the same both times) |
//! | main menu | `*` | goodbye, hang up |
//! | during / after a message | `1` | play it again |
//! | during / after a message | `7` | delete it |
//! | during / after a message | `9` | save it (mark heard) and go on |
//! | during / after a message | `6` | next message (a message played to its end counts as heard) |
//! | during / after a message | `*` | back to the main menu |
//!
//! **MWI** ([`Mwi`]): SUBSCRIBE `Event: message-summary` to the user's AoR (or to `voicemail@`)
//! is accepted for the authenticated owner only (the proxy checked the credentials and From);
//! NOTIFYs carry `application/simple-message-summary` with `Voice-Message: new/old`, one in
//! flight per subscription. When the counts change, every registered contact of the user that
//! has no subscription also gets an unsolicited NOTIFY.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_media::device::{CaptureDevice, DeviceError, PlaybackDevice};
use tandem_media::ogg::OggOpusWriter;
use tandem_proto::dialog::{Dialog, DialogState};
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};
use tandem_proto::simple::message_summary::{MessageCounts, MessageSummary};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::leg::final_response;
use super::prompts::{Prompt, PromptPlayer};
use super::{
    DialogMessage, Leg, LegEvent, MediaCtx, PlayResult, ServerRequest, random_tag,
    response_with_tag, subscription_state,
};
use crate::location::{unix_now, unix_now_ms};
use crate::store_voicemail::{VoicemailMessage, pin_hash};

/// Audio rate of recordings and prompts.
const RATE: u32 = 16_000;
/// Waiting for the first key of a menu choice or PIN.
const FIRST_KEY: Duration = Duration::from_secs(8);
/// Waiting for a further PIN digit.
const NEXT_KEY: Duration = Duration::from_secs(5);
/// Longest recorded greeting.
const MAX_GREETING: Duration = Duration::from_secs(60);
/// Bounds of a message-summary subscription's duration.
const MIN_EXPIRES: u32 = 60;
const MAX_EXPIRES: u32 = 3600;
/// Most MWI subscriptions at once.
const MAX_SUBSCRIPTIONS: usize = 10_000;
/// Times a menu is repeated without a valid key before hanging up.
const MENU_TRIES: u32 = 3;

/// The `[voicemail]` section: mailboxes, timeouts, storage and e-mail.
///
/// The retrieval keymap is in the [module docs](self): PIN then `#`; main menu `1` listen, `3`
/// record greeting, `4` change PIN, `*` hang up; per message `1` replay, `7` delete, `9` save, `6` next, `*`
/// back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoicemailConfig {
    /// Send unanswered, busy and unreachable calls to local users' mailboxes (default false:
    /// without it the proxy answers 408/480/486 as before; `vm-<user>@` deposit and
    /// `voicemail@` retrieval work either way).
    pub enabled: bool,
    /// Ring this long before the call goes to voicemail (default 20 s).
    pub no_answer_secs: u64,
    /// Where recordings and greetings live (default `<data_dir>/voicemail`).
    pub dir: Option<PathBuf>,
    /// The PIN of a mailbox whose owner never set one (default `1234`).
    pub default_pin: String,
    /// PIN attempts before hanging up (default 3).
    pub pin_tries: u32,
    /// Longest message (default 120 s).
    pub max_message_secs: u64,
    /// Shorter messages are discarded (default 700 ms).
    pub min_message_ms: u64,
    /// Most messages per mailbox; a full mailbox takes no more (default 100).
    pub max_messages: u32,
    /// Also NOTIFY registered devices that did not subscribe (default true).
    pub unsolicited_mwi: bool,
    /// E-mail each new message (with the recording) through this SMTP relay (default: none).
    pub smtp: Option<super::smtp::SmtpConfig>,
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        VoicemailConfig {
            enabled: false,
            no_answer_secs: 20,
            dir: None,
            default_pin: "1234".into(),
            pin_tries: 3,
            max_message_secs: 120,
            min_message_ms: 700,
            max_messages: 100,
            unsolicited_mwi: true,
            smtp: None,
        }
    }
}

impl VoicemailConfig {
    /// The directory for `user`'s files.
    fn user_dir(&self, data_dir: &Path, user: &str) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("voicemail"))
            .join(user)
    }
}

/// A playback device that records into an Ogg Opus file the voicemail code can close itself.
#[derive(Clone)]
struct Recorder {
    writer: Arc<Mutex<Option<OggOpusWriter>>>,
    samples: Arc<AtomicU64>,
}

impl Recorder {
    fn create(path: &Path) -> Result<Recorder, String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let writer = OggOpusWriter::create(path, RATE)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Recorder {
            writer: Arc::new(Mutex::new(Some(writer))),
            samples: Arc::new(AtomicU64::new(0)),
        })
    }

    fn duration(&self) -> Duration {
        Duration::from_millis(self.samples.load(Ordering::Relaxed) * 1000 / u64::from(RATE))
    }

    /// Closes the file (idempotent); the recorded duration.
    fn close(&self) -> Result<Duration, String> {
        let taken = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut w) = taken {
            w.finish().map_err(|e| e.to_string())?;
        }
        Ok(self.duration())
    }
}

impl PlaybackDevice for Recorder {
    fn rate(&self) -> u32 {
        RATE
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(w) => {
                w.write_pcm(pcm)?;
                self.samples.fetch_add(pcm.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        self.close().map(|_| ()).map_err(DeviceError::StreamFailed)
    }
}

fn player() -> Option<PromptPlayer> {
    PromptPlayer::new(RATE).ok()
}

fn prompt(p: Prompt) -> Box<dyn CaptureDevice> {
    match player().and_then(|pl| pl.prompt(p).ok()) {
        Some(pl) => Box::new(pl),
        None => Box::new(tandem_media::device::NullCapture::new(RATE)),
    }
}

fn boxed(pl: Option<PromptPlayer>) -> Box<dyn CaptureDevice> {
    match pl {
        Some(pl) => Box::new(pl),
        None => Box::new(tandem_media::device::NullCapture::new(RATE)),
    }
}

/// Plays `p`; a key stops it early. False when the call ended.
async fn say(leg: &mut Leg, p: Prompt) -> bool {
    leg.play_interruptible(prompt(p)).await != PlayResult::Hangup
}

/// Plays the goodbye prompt and hangs up.
async fn goodbye(leg: &mut Leg) {
    if say(leg, Prompt::VmGoodbye).await {
        leg.hangup().await;
    }
}

/// A caller leaving a message for `user` (`vm-<user>@`).
pub async fn deposit(ctx: Arc<MediaCtx>, mut leg: Leg, user: String) {
    let config = ctx.config().voicemail.clone();
    let exists = ctx.authn().user_exists(&user).await.unwrap_or(false);
    if !exists {
        leg.reject(404, "No Such Mailbox");
        return;
    }
    let (new, old) = match ctx.store().voicemail_counts(&user).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "voicemail: counts");
            leg.reject(500, "Mailbox Unavailable");
            return;
        }
    };
    if leg.answer().await.is_err() {
        return;
    }
    if new.saturating_add(old) >= config.max_messages {
        tracing::info!(%user, "voicemail: mailbox full");
        goodbye(&mut leg).await;
        return;
    }
    let greeting = ctx
        .store()
        .voicemail_box(&user)
        .await
        .ok()
        .flatten()
        .and_then(|b| b.greeting)
        .filter(|g| Path::new(g).is_file());
    let intro = match greeting {
        Some(path) => player().and_then(|pl| pl.file(&path).ok()),
        None => player().and_then(|pl| pl.prompt(Prompt::VmUnavailable).ok()),
    };
    let intro = intro.or_else(player).map(PromptPlayer::beep);
    if leg.play_interruptible(boxed(intro)).await == PlayResult::Hangup {
        return;
    }
    // The greeting may have been skipped with a key: make sure the beep is heard.
    let id = random_tag();
    let path = config
        .user_dir(&ctx.config().data_dir, &user)
        .join(format!("{id}.opus"));
    let mut message = VoicemailMessage {
        id,
        mailbox: user.clone(),
        caller: leg.caller().to_string(),
        caller_name: leg.caller_name().map(str::to_owned),
        received_at: unix_now_ms(),
        duration_ms: 0,
        path: path.display().to_string(),
        is_new: true,
    };
    let recorder = match Recorder::create(&path) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "voicemail: cannot record");
            goodbye(&mut leg).await;
            return;
        }
    };
    // The row first: a crash while recording leaves a row to recover, not a stray file.
    if let Err(e) = ctx.store().voicemail_begin(&message).await {
        tracing::warn!(error = %e, "voicemail: message row not stored");
        let _ = recorder.close();
        let _ = std::fs::remove_file(&path);
        goodbye(&mut leg).await;
        return;
    }
    leg.stop_playing();
    leg.set_playback(Box::new(recorder.clone()));
    let max = Duration::from_secs(config.max_message_secs.max(1));
    let deadline = Instant::now() + max;
    let caller_left = loop {
        match tokio::time::timeout_at(deadline, leg.next_event()).await {
            Err(_) => break false,
            Ok(Some(LegEvent::Dtmf('#'))) => break false,
            Ok(Some(LegEvent::Hangup)) | Ok(None) => break true,
            Ok(Some(_)) => {}
        }
    };
    if !caller_left {
        leg.set_playback(Box::new(tandem_media::device::NullPlayback::new(RATE)));
    }
    let duration = recorder.close();
    let kept = match duration {
        Ok(d) if d >= Duration::from_millis(config.min_message_ms) => {
            message.duration_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            complete(&ctx, &config, &message).await
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "voicemail: recording failed");
            false
        }
    };
    if !kept {
        discard(&ctx, &message).await;
    }
    if caller_left {
        return;
    }
    if kept && !say(&mut leg, Prompt::VmSaved).await {
        return;
    }
    goodbye(&mut leg).await;
}

/// Turns a finished recording into a new message: row completed, MWI, e-mail.
async fn complete(ctx: &MediaCtx, config: &VoicemailConfig, message: &VoicemailMessage) -> bool {
    match ctx
        .store()
        .voicemail_complete(&message.mailbox, &message.id, message.duration_ms)
        .await
    {
        Ok(true) => {
            tracing::info!(mailbox = %message.mailbox, ms = message.duration_ms, "voicemail: message stored");
            notify(ctx, &message.mailbox);
            email(config, message);
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(error = %e, "voicemail: message row not completed");
            false
        }
    }
}

/// Drops a recording that is too short or failed: row, then file.
async fn discard(ctx: &MediaCtx, message: &VoicemailMessage) {
    if let Err(e) = ctx
        .store()
        .voicemail_delete(&message.mailbox, &message.id)
        .await
    {
        tracing::warn!(error = %e, "voicemail: recording row not removed");
        return;
    }
    let _ = std::fs::remove_file(&message.path);
}

/// Completes the recordings a previous run left unfinished (crash, kill, shutdown during a
/// message): the part on disk becomes a new message when it is long enough, else it is dropped.
pub async fn recover(ctx: &MediaCtx) {
    let config = ctx.config().voicemail.clone();
    let pending = match ctx.store().voicemail_recordings().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "voicemail: cannot list unfinished recordings");
            return;
        }
    };
    for mut message in pending {
        let path = message.path.clone();
        let duration = tokio::task::spawn_blocking(move || {
            tandem_media::ogg::OggOpusReader::open(&path)
                .ok()
                .and_then(|r| r.duration())
        })
        .await
        .ok()
        .flatten();
        match duration {
            Some(d) if d >= Duration::from_millis(config.min_message_ms) => {
                message.duration_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                tracing::info!(mailbox = %message.mailbox, id = %message.id, "voicemail: recovered an unfinished message");
                if !complete(ctx, &config, &message).await {
                    discard(ctx, &message).await;
                }
            }
            _ => discard(ctx, &message).await,
        }
    }
}

/// Sends the new-message e-mail in the background when `[voicemail.smtp]` lists the owner.
fn email(config: &VoicemailConfig, message: &VoicemailMessage) {
    let Some(smtp) = config.smtp.clone() else {
        return;
    };
    let Some(to) = smtp.recipients.get(&message.mailbox).cloned() else {
        return;
    };
    let message = message.clone();
    tokio::spawn(async move {
        let attachment = if smtp.attach {
            match tokio::fs::read(&message.path).await {
                Ok(bytes) => Some((
                    format!("{}.opus", message.id),
                    "audio/ogg".to_owned(),
                    bytes,
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "voicemail e-mail: recording unreadable");
                    None
                }
            }
        } else {
            None
        };
        let from = match &message.caller_name {
            Some(name) => format!("{name} <{}>", message.caller),
            None => message.caller.clone(),
        };
        let mail = super::smtp::Mail {
            to,
            subject: format!("New voicemail from {from}"),
            text: format!(
                "{from} left you a message of {:.1} s in mailbox {}.",
                message.duration_ms as f64 / 1000.0,
                message.mailbox
            ),
            attachment,
            date: message.received_at / 1000,
        };
        match super::smtp::send(&smtp, &mail).await {
            Ok(()) => tracing::info!(mailbox = %message.mailbox, "voicemail e-mail sent"),
            Err(e) => tracing::warn!(error = %e, "voicemail e-mail failed"),
        }
    });
}

/// The local user a retrieval call belongs to: the caller's own user in one of our domains.
fn mailbox_of(ctx: &MediaCtx, leg: &Leg) -> Option<String> {
    let caller = leg.caller();
    ctx.locals().canonical_aor(caller)?;
    caller.user.clone().filter(|u| !u.is_empty())
}

/// Asks for the PIN until it is right; false when the caller failed or hung up.
async fn login(ctx: &MediaCtx, leg: &mut Leg, user: &str) -> bool {
    let config = &ctx.config().voicemail;
    let stored = ctx
        .store()
        .voicemail_box(user)
        .await
        .ok()
        .flatten()
        .and_then(|b| b.pin_hash);
    let expected = stored.unwrap_or_else(|| pin_hash(user, &config.default_pin));
    for _ in 0..config.pin_tries.max(1) {
        let first = match leg.play_interruptible(prompt(Prompt::VmEnterPin)).await {
            PlayResult::Hangup => return false,
            PlayResult::Digit(d) => d.to_string(),
            PlayResult::Finished => String::new(),
        };
        let got = leg
            .collect_more(first, 16, Some('#'), FIRST_KEY, NEXT_KEY)
            .await;
        if got.hangup {
            return false;
        }
        if !got.digits.is_empty() && pin_hash(user, &got.digits) == expected {
            return true;
        }
        if !say(leg, Prompt::VmWrongPin).await {
            return false;
        }
    }
    goodbye(leg).await;
    false
}

/// "You have N new messages and M old messages" (or "no messages").
fn counts_announcement(new: u32, old: u32) -> Box<dyn CaptureDevice> {
    if new == 0 && old == 0 {
        return prompt(Prompt::VmNoMessages);
    }
    let mut pl = player().and_then(|p| p.prompt(Prompt::VmYouHave).ok());
    for (n, kind) in [(new, Prompt::VmNew), (old, Prompt::VmOld)] {
        if n > 0 {
            pl = pl
                .and_then(|p| p.number(u64::from(n)).ok())
                .and_then(|p| p.prompt(kind).ok())
                .and_then(|p| p.prompt(Prompt::VmMessages).ok());
        }
    }
    boxed(pl)
}

/// Waits for one key after a prompt (the prompt may be interrupted by it); `None` on hang-up
/// or when no key came.
async fn menu_key(leg: &mut Leg, menu: Prompt) -> Option<Option<char>> {
    match leg.play_interruptible(prompt(menu)).await {
        PlayResult::Hangup => None,
        PlayResult::Digit(d) => Some(Some(d)),
        PlayResult::Finished => {
            let got = leg.collect_digits(1, None, FIRST_KEY, FIRST_KEY).await;
            if got.hangup {
                None
            } else {
                Some(got.digits.chars().next())
            }
        }
    }
}

/// A caller reaching `voicemail@`/`vm@`: PIN, messages, greeting.
pub async fn retrieve(ctx: Arc<MediaCtx>, mut leg: Leg) {
    let Some(user) = mailbox_of(&ctx, &leg) else {
        leg.reject(403, "Only Local Users Have Mailboxes");
        return;
    };
    if leg.answer().await.is_err() {
        return;
    }
    if !login(&ctx, &mut leg, &user).await {
        return;
    }
    let (new, old) = ctx.store().voicemail_counts(&user).await.unwrap_or((0, 0));
    // A key pressed during the announcement is already the main menu choice.
    let mut pending = match leg.play_interruptible(counts_announcement(new, old)).await {
        PlayResult::Hangup => return,
        PlayResult::Digit(d) => Some(d),
        PlayResult::Finished => None,
    };
    let mut misses = 0;
    loop {
        let key = match pending.take() {
            Some(d) => Some(d),
            None => match menu_key(&mut leg, Prompt::VmMainMenu).await {
                Some(k) => k,
                None => return,
            },
        };
        match key {
            Some('1') => {
                misses = 0;
                if !listen(&ctx, &mut leg, &user).await {
                    return;
                }
            }
            Some('3') => {
                misses = 0;
                if !record_greeting(&ctx, &mut leg, &user).await {
                    return;
                }
            }
            Some('4') => {
                misses = 0;
                if !change_pin(&ctx, &mut leg, &user).await {
                    return;
                }
            }
            Some('*') => {
                goodbye(&mut leg).await;
                return;
            }
            _ => {
                misses += 1;
                if misses >= MENU_TRIES {
                    goodbye(&mut leg).await;
                    return;
                }
            }
        }
    }
}

/// Asks for a new PIN twice and stores it when both entries match; false when the call ended.
async fn change_pin(ctx: &MediaCtx, leg: &mut Leg, user: &str) -> bool {
    let mut entries = Vec::with_capacity(2);
    for _ in 0..2 {
        let first = match leg.play_interruptible(prompt(Prompt::VmEnterPin)).await {
            PlayResult::Hangup => return false,
            PlayResult::Digit(d) => d.to_string(),
            PlayResult::Finished => String::new(),
        };
        let got = leg
            .collect_more(first, 16, Some('#'), FIRST_KEY, NEXT_KEY)
            .await;
        if got.hangup {
            return false;
        }
        entries.push(got.digits);
    }
    let valid = entries.first().is_some_and(|a| {
        !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && entries.get(1) == Some(a)
    });
    let stored = match entries.first() {
        Some(pin) if valid => match ctx.store().voicemail_set_pin(user, pin).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "voicemail: PIN not stored");
                false
            }
        },
        _ => false,
    };
    say(
        leg,
        if stored {
            Prompt::VmSaved
        } else {
            Prompt::VmWrongPin
        },
    )
    .await
}

/// What to do with the current message.
enum Choice {
    Replay,
    Delete,
    Save,
    Next,
    Back,
}

fn choice(key: char) -> Option<Choice> {
    Some(match key {
        '1' => Choice::Replay,
        '7' => Choice::Delete,
        '9' => Choice::Save,
        '6' => Choice::Next,
        '*' => Choice::Back,
        _ => return None,
    })
}

/// Plays the messages one by one with the message menu; false when the call ended.
async fn listen(ctx: &MediaCtx, leg: &mut Leg, user: &str) -> bool {
    let messages = match ctx.store().voicemail_messages(user).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "voicemail: messages");
            Vec::new()
        }
    };
    if messages.is_empty() {
        return say(leg, Prompt::VmNoMessages).await;
    }
    for message in messages {
        let mut heard = false;
        let mut play = true;
        let mut misses = 0;
        loop {
            let mut key = None;
            if play {
                let audio = player()
                    .and_then(|p| p.file(&message.path).ok())
                    .map(|p| p.beep());
                match leg.play_interruptible(boxed(audio)).await {
                    PlayResult::Hangup => {
                        if heard {
                            mark_heard(ctx, user, &message).await;
                        }
                        return false;
                    }
                    PlayResult::Finished => heard = true,
                    PlayResult::Digit(d) => key = Some(d),
                }
                play = false;
            }
            let key = match key {
                Some(k) => Some(k),
                None => match menu_key(leg, Prompt::VmMessageMenu).await {
                    None => {
                        if heard {
                            mark_heard(ctx, user, &message).await;
                        }
                        return false;
                    }
                    Some(k) => k,
                },
            };
            match key.and_then(choice) {
                Some(Choice::Replay) => play = true,
                Some(Choice::Delete) => {
                    match ctx.store().voicemail_delete(user, &message.id).await {
                        Ok(Some(m)) => {
                            let _ = std::fs::remove_file(&m.path);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "voicemail: delete"),
                    }
                    notify(ctx, user);
                    if !say(leg, Prompt::VmDeleted).await {
                        return false;
                    }
                    break;
                }
                Some(Choice::Save) => {
                    mark_heard(ctx, user, &message).await;
                    if !say(leg, Prompt::VmSaved).await {
                        return false;
                    }
                    break;
                }
                Some(Choice::Next) => {
                    if heard {
                        mark_heard(ctx, user, &message).await;
                    }
                    break;
                }
                Some(Choice::Back) => {
                    if heard {
                        mark_heard(ctx, user, &message).await;
                    }
                    return true;
                }
                None => {
                    misses += 1;
                    if misses >= MENU_TRIES {
                        goodbye(leg).await;
                        return false;
                    }
                }
            }
        }
    }
    say(leg, Prompt::VmNoMessages).await
}

async fn mark_heard(ctx: &MediaCtx, user: &str, message: &VoicemailMessage) {
    if message.is_new {
        match ctx.store().voicemail_mark_old(user, &message.id).await {
            Ok(_) => notify(ctx, user),
            Err(e) => tracing::warn!(error = %e, "voicemail: mark old"),
        }
    }
}

/// The expiry granted to a mailbox SUBSCRIBE: its `Expires` (`MAX_EXPIRES` when absent or
/// unreadable) capped at `MAX_EXPIRES`, or the 423 response (with our To tag `tag`) refusing a
/// nonzero interval under `MIN_EXPIRES` (RFC 6665 §4.2.1.1).
fn subscribe_expires(request: &Request, tag: &str) -> Result<u32, Response> {
    let requested = request
        .headers
        .expires()
        .ok()
        .flatten()
        .unwrap_or(MAX_EXPIRES);
    if requested != 0 && requested < MIN_EXPIRES {
        let mut r = response_with_tag(request, 423, "Interval Too Brief", tag);
        r.headers
            .push(HeaderName::MinExpires, MIN_EXPIRES.to_string());
        return Err(r);
    }
    Ok(requested.min(MAX_EXPIRES))
}

fn notify(ctx: &MediaCtx, user: &str) {
    if let Some(mwi) = ctx.mwi() {
        mwi.changed(user);
    }
}

/// Records a new greeting; false when the call ended.
async fn record_greeting(ctx: &MediaCtx, leg: &mut Leg, user: &str) -> bool {
    let intro = player()
        .and_then(|p| p.prompt(Prompt::VmRecordGreeting).ok())
        .map(PromptPlayer::beep);
    if leg.play_interruptible(boxed(intro)).await == PlayResult::Hangup {
        return false;
    }
    let dir = ctx
        .config()
        .voicemail
        .user_dir(&ctx.config().data_dir, user);
    let tmp = dir.join(format!("greeting-{}.opus", random_tag()));
    let recorder = match Recorder::create(&tmp) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "voicemail: cannot record a greeting");
            return say(leg, Prompt::VmGoodbye).await;
        }
    };
    leg.stop_playing();
    leg.set_playback(Box::new(recorder.clone()));
    let deadline = Instant::now() + MAX_GREETING;
    let hung_up = loop {
        match tokio::time::timeout_at(deadline, leg.next_event()).await {
            Err(_) | Ok(Some(LegEvent::Dtmf('#'))) => break false,
            Ok(Some(LegEvent::Hangup)) | Ok(None) => break true,
            Ok(Some(_)) => {}
        }
    };
    if !hung_up {
        leg.set_playback(Box::new(tandem_media::device::NullPlayback::new(RATE)));
    }
    let ok = matches!(recorder.close(), Ok(d) if d >= Duration::from_millis(500));
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        return !hung_up;
    }
    // The new greeting replaces the old one in one rename; the row points at the final name.
    let path = dir.join("greeting.opus");
    if let Err(e) = std::fs::rename(&tmp, &path) {
        tracing::warn!(error = %e, "voicemail: greeting not saved");
        let _ = std::fs::remove_file(&tmp);
        return !hung_up;
    }
    let stored = path.display().to_string();
    if let Err(e) = ctx
        .store()
        .voicemail_set_greeting(user, Some(&stored))
        .await
    {
        tracing::warn!(error = %e, "voicemail: greeting row");
    }
    if hung_up {
        return false;
    }
    say(leg, Prompt::VmGreetingSaved).await
}

/// One accepted message-summary subscription.
struct Subscription {
    mailbox: String,
    /// The subscriber's Contact (no unsolicited NOTIFY to it).
    contact: Uri,
    changed: mpsc::UnboundedSender<()>,
}

/// The MWI notifier: message-summary subscriptions (RFC 3842) and unsolicited NOTIFYs.
pub struct Mwi {
    ctx: Weak<MediaCtx>,
    subs: Mutex<HashMap<u64, Subscription>>,
    next_id: AtomicU64,
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Mwi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mwi")
            .field("subscriptions", &self.subs().len())
            .finish_non_exhaustive()
    }
}

/// The message-summary body for `mailbox` with these counts.
pub fn summary_body(account: &Uri, new: u32, old: u32) -> String {
    MessageSummary {
        waiting: new > 0,
        account: Some(account.to_string()),
        voice: Some(MessageCounts {
            new,
            old,
            urgent_new: 0,
            urgent_old: 0,
        }),
        ..MessageSummary::default()
    }
    .to_body()
}

impl Mwi {
    /// Starts the notifier for the media server `ctx`.
    pub fn start(ctx: &Arc<MediaCtx>) -> Arc<Mwi> {
        Arc::new(Mwi {
            ctx: Arc::downgrade(ctx),
            subs: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn subs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscription>> {
        self.subs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops sending NOTIFYs.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.subs().clear();
    }

    /// Active subscriptions to `mailbox`.
    pub fn subscribers(&self, mailbox: &str) -> usize {
        self.subs()
            .values()
            .filter(|s| s.mailbox == mailbox)
            .count()
    }

    /// The message counts of `mailbox` changed: NOTIFY its subscribers and (unsolicited) its
    /// other registered devices.
    pub fn changed(&self, mailbox: &str) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut contacts = Vec::new();
        for s in self.subs().values().filter(|s| s.mailbox == mailbox) {
            let _ = s.changed.send(());
            contacts.push(s.contact.clone());
        }
        let Some(ctx) = self.ctx.upgrade() else {
            return;
        };
        if !ctx.config().voicemail.unsolicited_mwi {
            return;
        }
        let aor = ctx.aor(mailbox);
        let Some(key) = ctx.locals().canonical_aor(&aor) else {
            return;
        };
        let bindings = ctx.location().lookup(&key, unix_now());
        let targets: Vec<Uri> = bindings
            .iter()
            .filter_map(|b| Uri::parse(&b.contact).ok())
            .filter(|c| !contacts.iter().any(|s| s.equivalent(c)))
            .collect();
        if targets.is_empty() {
            return;
        }
        let mailbox = mailbox.to_owned();
        tokio::spawn(async move {
            let (new, old) = ctx
                .store()
                .voicemail_counts(&mailbox)
                .await
                .unwrap_or((0, 0));
            let body = summary_body(&aor, new, old);
            for contact in targets {
                let mut req = Request::new(Method::Notify, contact);
                let mut from = NameAddr::new(ctx.aor("voicemail"));
                from.set_tag(&random_tag());
                req.headers.push(HeaderName::From, from.to_string());
                req.headers
                    .push(HeaderName::To, NameAddr::new(aor.clone()).to_string());
                req.headers
                    .push(HeaderName::CallId, format!("{}@mwi", random_tag()));
                req.headers.push(HeaderName::CSeq, "1 NOTIFY");
                req.headers.push(HeaderName::MaxForwards, "70");
                req.headers.push(
                    HeaderName::Contact,
                    format!("<{}>", ctx.contact("voicemail")),
                );
                req.headers.push(HeaderName::Event, "message-summary");
                req.headers.push(HeaderName::SubscriptionState, "active");
                req.headers.push(
                    HeaderName::ContentType,
                    "application/simple-message-summary",
                );
                req.body = Bytes::from(body.clone());
                if let Err(e) = final_response(ctx.endpoint(), req, ctx.proxy_flow()).await {
                    tracing::debug!(error = %e, "unsolicited MWI NOTIFY failed");
                }
            }
        });
    }

    /// Takes a SUBSCRIBE `Event: message-summary` (out of dialog).
    pub fn subscribe(self: &Arc<Self>, req: ServerRequest) {
        let Some(ctx) = self.ctx.upgrade() else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move { this.accept(ctx, req).await });
    }

    async fn accept(self: Arc<Self>, ctx: Arc<MediaCtx>, req: ServerRequest) {
        let tag = random_tag();
        let reply = |status: u16, reason: &str| {
            ctx.endpoint().respond(
                req.tx,
                response_with_tag(&req.request, status, reason, &tag),
            );
        };
        let Ok(from) = req.request.headers.from() else {
            reply(400, "Bad From");
            return;
        };
        let subscriber = from.uri.user.clone().unwrap_or_default();
        let target = req.request.uri.user.clone().unwrap_or_default();
        let mailbox = match super::Service::from_user(&target) {
            Some(super::Service::VoicemailRetrieval) => subscriber.clone(),
            Some(_) => {
                reply(404, "Not Found");
                return;
            }
            None => target,
        };
        if mailbox.is_empty()
            || mailbox != subscriber
            || ctx.locals().canonical_aor(&from.uri).is_none()
        {
            reply(403, "Only The Mailbox Owner May Subscribe");
            return;
        }
        if !ctx.authn().user_exists(&mailbox).await.unwrap_or(false) {
            reply(404, "Not Found");
            return;
        }
        let expires = match subscribe_expires(&req.request, &tag) {
            Ok(e) => e,
            Err(r) => {
                ctx.endpoint().respond(req.tx, r);
                return;
            }
        };
        if self.subs().len() >= MAX_SUBSCRIPTIONS {
            let mut r = response_with_tag(&req.request, 503, "Too Many Subscriptions", &tag);
            r.headers.push(HeaderName::RetryAfter, "60");
            ctx.endpoint().respond(req.tx, r);
            return;
        }
        let mut dialog = match Dialog::from_uas(&req.request, &tag) {
            Ok(d) => d,
            Err(e) => {
                reply(400, &format!("Bad SUBSCRIBE: {e}"));
                return;
            }
        };
        let contact = ctx.contact("voicemail");
        dialog.local_contact = Some(NameAddr::new(contact.clone()));
        dialog.confirm();
        let inbox = ctx.register_dialog(&dialog.id.call_id, &tag);
        let mut ok = response_with_tag(&req.request, 200, "OK", &tag);
        for rr in req.request.headers.get_all(&HeaderName::RecordRoute) {
            ok.headers.push(HeaderName::RecordRoute, rr.clone());
        }
        ok.headers.push(HeaderName::Contact, format!("<{contact}>"));
        ok.headers.push(HeaderName::Expires, expires.to_string());
        ctx.endpoint().respond(req.tx, ok);
        let account = ctx.aor(&mailbox);
        if expires == 0 {
            // A fetch: one NOTIFY with the state, terminated.
            let mut sub = MwiDialog {
                ctx,
                dialog,
                account,
                mailbox,
                expires_at: Instant::now(),
            };
            sub.send_notify(true).await;
            return;
        }
        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subs().insert(
            id,
            Subscription {
                mailbox: mailbox.clone(),
                contact: dialog.remote_target.clone(),
                changed: changed_tx,
            },
        );
        let sub = MwiDialog {
            ctx,
            dialog,
            account,
            mailbox,
            expires_at: Instant::now() + Duration::from_secs(u64::from(expires)),
        };
        sub.run(inbox, changed_rx).await;
        self.subs().remove(&id);
    }
}

/// The notifier side of one message-summary subscription dialog.
struct MwiDialog {
    ctx: Arc<MediaCtx>,
    dialog: Dialog,
    account: Uri,
    mailbox: String,
    expires_at: Instant,
}

impl MwiDialog {
    async fn run(
        mut self,
        mut inbox: super::DialogInbox,
        mut changed: mpsc::UnboundedReceiver<()>,
    ) {
        if !self.send_notify(false).await {
            return;
        }
        loop {
            tokio::select! {
                msg = inbox.recv() => match msg {
                    None => return,
                    Some(DialogMessage::Request(req)) => {
                        if let Some(terminate) = self.on_request(req)
                            && (!self.send_notify(terminate).await || terminate)
                        {
                            return;
                        }
                    }
                    Some(_) => {}
                },
                c = changed.recv() => {
                    if c.is_none() {
                        // The notifier stopped.
                        let _ = self.send_notify(true).await;
                        return;
                    }
                    // Merge a burst of changes into one NOTIFY.
                    while changed.try_recv().is_ok() {}
                    if !self.send_notify(false).await {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(self.expires_at) => {
                    let _ = self.send_notify(true).await;
                    return;
                }
            }
        }
    }

    /// An in-dialog request: `Some(terminate)` when a NOTIFY should follow (a refresh).
    fn on_request(&mut self, req: ServerRequest) -> Option<bool> {
        let tag = self.dialog.id.local_tag.clone();
        let respond = |status: u16, reason: &str| {
            self.ctx.endpoint().respond(
                req.tx,
                response_with_tag(&req.request, status, reason, &tag),
            );
        };
        if let Err(e) = self.dialog.check_request(&req.request) {
            let status = match e {
                tandem_proto::dialog::DialogError::CSeqOutOfOrder { .. } => 500,
                _ => 481,
            };
            respond(status, "Bad In-Dialog Request");
            return None;
        }
        if req.request.method != Method::Subscribe {
            respond(405, "Method Not Allowed");
            return None;
        }
        let expires = match subscribe_expires(&req.request, &tag) {
            Ok(e) => e,
            Err(r) => {
                self.ctx.endpoint().respond(req.tx, r);
                return None;
            }
        };
        let mut ok = response_with_tag(&req.request, 200, "OK", &tag);
        if let Some(c) = &self.dialog.local_contact {
            ok.headers.push(HeaderName::Contact, c.to_string());
        }
        ok.headers.push(HeaderName::Expires, expires.to_string());
        self.ctx.endpoint().respond(req.tx, ok);
        self.expires_at = Instant::now() + Duration::from_secs(u64::from(expires));
        Some(expires == 0)
    }

    /// Sends a NOTIFY with the current counts and waits for its answer; false when the
    /// subscription is gone (terminated, 481, timeout).
    async fn send_notify(&mut self, terminate: bool) -> bool {
        if self.dialog.state == DialogState::Terminated {
            return false;
        }
        let (new, old) = match self.ctx.store().voicemail_counts(&self.mailbox).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "MWI: counts");
                (0, 0)
            }
        };
        let mut req = self.dialog.new_request(Method::Notify);
        req.headers.push(HeaderName::Event, "message-summary");
        req.headers.push(
            HeaderName::SubscriptionState,
            subscription_state(terminate, self.expires_at),
        );
        req.headers.push(
            HeaderName::ContentType,
            "application/simple-message-summary",
        );
        req.body = Bytes::from(summary_body(&self.account, new, old));
        if terminate {
            self.dialog.terminate();
        }
        match final_response(self.ctx.endpoint(), req, self.ctx.proxy_flow()).await {
            Ok(r) if (200..300).contains(&r.status) => !terminate,
            Ok(r) => {
                tracing::debug!(status = r.status, "MWI NOTIFY refused: subscription ends");
                self.dialog.terminate();
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "MWI NOTIFY failed: subscription ends");
                self.dialog.terminate();
                false
            }
        }
    }
}
