//! Audio conference rooms with mix-minus and the conference event package (RFC 4575).
//!
//! A call to `conf-<room>@domain` joins room `<room>` (names: 1–64 characters of `A-Z a-z 0-9 . _ -`).
//! Rooms are either static (`[[conference.rooms]]`: name, PIN, moderator PIN, initially locked,
//! size) or, with `create_on_join` (the default), created by the first caller and removed when the
//! last participant and the last watcher have left; with `create_on_join = false` an unknown room
//! is answered 404.
//!
//! Each room runs a [`tandem_media::mixer::Mixer`] on its own clock thread while somebody is in
//! it; every leg plugs in at its codec's rate (8 kHz for G.711, 16 kHz for G.722, 48 kHz for Opus)
//! through the mixer's capture/playback adapters, so each leg's own jitter buffer and codec do the
//! transcoding and nobody hears themselves. Join and leave tones go to the others.
//!
//! Entry: a room with a `pin` (or a `moderator_pin`) answers and asks for it (digits, then `#`, or
//! a 5 s pause); the moderator PIN makes the caller a moderator; after `pin_tries` (default 3)
//! wrong entries the call is hung up. In a room with only a moderator PIN an empty entry joins as
//! an ordinary participant. A locked room lets in only moderators (a locked room without a
//! moderator PIN is answered 403).
//!
//! DTMF keys once in the room (a command is `*` followed by one digit within 3 s; other keys are
//! ignored, so a DTMF flood changes nothing but what it spells):
//!
//! | keys | who | what |
//! |---|---|---|
//! | `*6` | everybody | mute / unmute yourself |
//! | `*1` | moderator | mute everybody else (again: unmute everybody) |
//! | `*2` | moderator | lock / unlock the room |
//! | `*3` | moderator | remove the participant who joined last |
//!
//! Feedback goes into the caller's own mix: the spoken prompts `conf-enter-pin`,
//! `conf-wrong-pin`, `conf-locked`, `conf-muted`, `conf-unmuted`; tones for the rest (unlocked =
//! two 700 Hz beeps, everybody else muted = three 350 Hz beeps, unmuted = two 1200 Hz beeps,
//! done = one 800 Hz beep, denied = one long 300 Hz beep).
//!
//! Watchers `SUBSCRIBE` to `conf-<room>@domain` with `Event: conference` and get NOTIFYs with
//! full `application/conference-info+xml` documents (RFC 4575): users with their role, endpoint
//! status (`connected` or `muted-via-focus`), one audio media stream each with Tandem's
//! `speaking` extension, the user count and whether the room is locked. NOTIFYs are sent on every
//! change, at most one every `notify_interval_ms` per subscription and one at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_media::device::CaptureDevice;
use tandem_media::mixer::{
    Clip16, Mixer, MixerConfig, MixerEvent, ParticipantId, join_tone, leave_tone,
};
use tandem_media::tone::SineGenerator;
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request};
use tandem_proto::simple::conference_info::{
    self as ci, ConferenceDescription, ConferenceInfo, ConferenceState, ElementState, Endpoint,
    EndpointStatus, Media, UriEntry, User,
};
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use super::leg::final_response;
use super::prompts::Prompt;
use super::{
    DialogMessage, Leg, LegEvent, MediaCtx, PlayResult, ServerRequest, random_tag,
    response_with_tag, subscription_state,
};

/// A statically configured room (`[[conference.rooms]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// The room name: `conf-<name>@domain`.
    pub name: String,
    /// The PIN every participant must enter (digits), if any.
    pub pin: Option<String>,
    /// The PIN that makes a participant a moderator, if any.
    pub moderator_pin: Option<String>,
    /// Whether the room starts locked (only moderators get in).
    pub locked: bool,
    /// Most participants (default: `[conference] max_participants`).
    pub max_participants: Option<usize>,
}

/// The `[conference]` section: rooms, PINs and mixer limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConferenceConfig {
    /// Serve conference rooms at all (default true; false answers 404 to every room).
    pub enabled: bool,
    /// Create an unknown room when somebody calls or watches it (default true); false = only
    /// the static rooms exist.
    pub create_on_join: bool,
    /// The static rooms.
    pub rooms: Vec<RoomConfig>,
    /// Most rooms at once (static ones included).
    pub max_rooms: usize,
    /// Most participants per room unless the room says otherwise.
    pub max_participants: usize,
    /// Wrong PIN entries before the call is hung up.
    pub pin_tries: u32,
    /// The mixer's rate in Hz (8000, 16000, 32000 or 48000).
    pub mixer_rate: u32,
    /// Play join and leave tones.
    pub tones: bool,
    /// Most conference-event subscriptions per room.
    pub max_subscriptions: usize,
    /// The longest subscription granted, in seconds (also the default).
    pub max_expires_secs: u32,
    /// Minimum time between two NOTIFYs of one subscription, in milliseconds.
    pub notify_interval_ms: u64,
}

impl Default for ConferenceConfig {
    fn default() -> Self {
        ConferenceConfig {
            enabled: true,
            create_on_join: true,
            rooms: Vec::new(),
            max_rooms: 200,
            max_participants: 32,
            pin_tries: 3,
            mixer_rate: 48_000,
            tones: true,
            max_subscriptions: 200,
            max_expires_secs: 3600,
            notify_interval_ms: 200,
        }
    }
}

/// Shortest subscription accepted (RFC 6665 §4.2.1.1: 423 below it).
const MIN_EXPIRES: u32 = 60;
/// How long the caller has for the first PIN digit, and between digits.
const PIN_FIRST: Duration = Duration::from_secs(5);
/// See [`PIN_FIRST`].
const PIN_BETWEEN: Duration = Duration::from_secs(5);
/// How long a `*` waits for its command digit.
const COMMAND_WINDOW: Duration = Duration::from_secs(3);
/// The methods a conference URI accepts, for `Allow`.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, SUBSCRIBE, NOTIFY, INFO";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `name` is a usable room name.
pub fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The conference service of one media server: its rooms.
pub struct Conferences {
    config: ConferenceConfig,
    domain: String,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
}

/// The rooms of every running media server in this process, keyed by its context.
static SERVICES: Mutex<Vec<(Weak<MediaCtx>, Arc<Conferences>)>> = Mutex::new(Vec::new());

/// The conference service of `ctx` (created on first use).
pub fn service(ctx: &Arc<MediaCtx>) -> Arc<Conferences> {
    let mut all = lock(&SERVICES);
    all.retain(|(w, _)| w.strong_count() > 0);
    let me = Arc::downgrade(ctx);
    if let Some((_, s)) = all.iter().find(|(w, _)| w.ptr_eq(&me)) {
        return Arc::clone(s);
    }
    let s = Arc::new(Conferences {
        config: ctx.config().conference.clone(),
        domain: ctx.domain().to_owned(),
        rooms: Mutex::new(HashMap::new()),
    });
    all.push((me, Arc::clone(&s)));
    s
}

/// Why a room could not be entered or watched (the SIP status to answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal(u16, &'static str);

impl Conferences {
    /// The room `name`, created when allowed.
    fn room(&self, name: &str) -> Result<Arc<Room>, Refusal> {
        if !self.config.enabled || !valid_room_name(name) {
            return Err(Refusal(404, "No Such Conference"));
        }
        let mut rooms = lock(&self.rooms);
        if let Some(r) = rooms.get(name) {
            return Ok(Arc::clone(r));
        }
        let configured = self.config.rooms.iter().find(|r| r.name == name);
        if configured.is_none() && !self.config.create_on_join {
            return Err(Refusal(404, "No Such Conference"));
        }
        if rooms.len() >= self.config.max_rooms {
            return Err(Refusal(503, "Too Many Conferences"));
        }
        let settings = configured.cloned().unwrap_or_else(|| RoomConfig {
            name: name.to_owned(),
            ..RoomConfig::default()
        });
        let room = Arc::new(Room::new(
            &self.config,
            &self.domain,
            settings,
            configured.is_some(),
        ));
        rooms.insert(name.to_owned(), Arc::clone(&room));
        Ok(room)
    }

    /// Forgets a dynamic room once nobody is in it or watching it.
    fn release(&self, room: &Arc<Room>) {
        if room.is_static {
            return;
        }
        let mut rooms = lock(&self.rooms);
        let mut inner = lock(&room.inner);
        if inner.members.is_empty()
            && inner.subscriptions == 0
            && rooms
                .get(&room.settings.name)
                .is_some_and(|r| Arc::ptr_eq(r, room))
        {
            rooms.remove(&room.settings.name);
            inner.removed = true;
        }
    }

    /// The names of the rooms that exist now.
    pub fn room_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.rooms).keys().cloned().collect();
        names.sort();
        names
    }

    /// The current conference-info document of a room (`None` when it does not exist).
    pub fn snapshot(&self, name: &str) -> Option<ConferenceInfo> {
        let room = lock(&self.rooms).get(name).cloned()?;
        Some(room.document(None))
    }
}

/// One room.
struct Room {
    settings: RoomConfig,
    is_static: bool,
    entity: String,
    max_participants: usize,
    mixer_rate: u32,
    tones: bool,
    inner: Mutex<RoomInner>,
    /// Bumped on every change a watcher should hear about.
    changes: watch::Sender<u64>,
}

struct RoomInner {
    /// Set when the service forgot this (idle, dynamic) room: nobody may enter it any more.
    removed: bool,
    mixer: Option<Mixer>,
    locked: bool,
    members: Vec<Member>,
    subscriptions: usize,
    next_seq: u64,
}

struct Member {
    pid: ParticipantId,
    seq: u64,
    uri: String,
    display: Option<String>,
    moderator: bool,
    muted: bool,
    joined: SystemTime,
    kick: Arc<Notify>,
}

impl Room {
    fn new(config: &ConferenceConfig, domain: &str, settings: RoomConfig, is_static: bool) -> Room {
        let (changes, _) = watch::channel(0);
        Room {
            entity: format!("sip:conf-{}@{}", settings.name, domain),
            max_participants: settings
                .max_participants
                .unwrap_or(config.max_participants)
                .max(1),
            mixer_rate: config.mixer_rate,
            tones: config.tones,
            inner: Mutex::new(RoomInner {
                removed: false,
                mixer: None,
                locked: settings.locked,
                members: Vec::new(),
                subscriptions: 0,
                next_seq: 1,
            }),
            settings,
            is_static,
            changes,
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The room's conference-info document (full state) with `version`.
    fn document(&self, version: Option<u32>) -> ConferenceInfo {
        let inner = lock(&self.inner);
        let speaking: HashMap<ParticipantId, bool> = inner
            .mixer
            .as_ref()
            .map(|m| {
                m.participants()
                    .into_iter()
                    .map(|p| (p.id, p.speaking))
                    .collect()
            })
            .unwrap_or_default();
        let mut users: Vec<User> = Vec::new();
        for m in &inner.members {
            let endpoint = Endpoint {
                entity: format!("{};tandem-leg={}", m.uri, m.seq),
                status: Some(if m.muted {
                    EndpointStatus::MutedViaFocus
                } else {
                    EndpointStatus::Connected
                }),
                joining_method: Some("dialed-in".into()),
                joining_when: Some(rfc3339(m.joined)),
                media: vec![Media {
                    id: "1".into(),
                    media_type: Some("audio".into()),
                    status: Some(if m.muted { "recvonly" } else { "sendrecv" }.into()),
                    speaking: Some(speaking.get(&m.pid).copied().unwrap_or(false)),
                    ..Media::default()
                }],
                ..Endpoint::default()
            };
            let role = if m.moderator {
                "moderator"
            } else {
                "participant"
            };
            match users.iter_mut().find(|u| u.entity == m.uri) {
                Some(u) => {
                    u.endpoints.push(endpoint);
                    if m.moderator && !u.roles.iter().any(|r| r == "moderator") {
                        u.roles = vec!["moderator".into()];
                    }
                }
                None => users.push(User {
                    entity: m.uri.clone(),
                    display_text: m.display.clone(),
                    roles: vec![role.into()],
                    endpoints: vec![endpoint],
                    ..User::default()
                }),
            }
        }
        ConferenceInfo {
            entity: self.entity.clone(),
            state: ElementState::Full,
            version,
            description: Some(ConferenceDescription {
                display_text: Some(self.settings.name.clone()),
                conf_uris: vec![UriEntry {
                    uri: self.entity.clone(),
                    display_text: None,
                    purpose: Some("participation".into()),
                }],
                maximum_user_count: u32::try_from(self.max_participants).ok(),
                ..ConferenceDescription::default()
            }),
            conference_state: Some(ConferenceState {
                user_count: u32::try_from(inner.members.len()).ok(),
                active: Some(!inner.members.is_empty()),
                locked: Some(inner.locked),
            }),
            users_state: Some(ElementState::Full),
            users,
            extra: Vec::new(),
        }
    }
}

/// RFC 3339 UTC time (seconds precision).
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Audible feedback, as short tone patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cue {
    EnterPin,
    WrongPin,
    Muted,
    Unmuted,
    Locked,
    Unlocked,
    Denied,
    Done,
    AllMuted,
    AllUnmuted,
}

/// `(frequency, milliseconds)` notes with 60 ms gaps, at a quarter of full scale.
fn beeps(rate: u32, notes: &[(f32, u32)]) -> Clip16 {
    let ms = |n: u32| (rate as usize) * n as usize / 1000;
    let mut out = Vec::new();
    for (i, &(freq, len)) in notes.iter().enumerate() {
        if i > 0 {
            out.extend(std::iter::repeat_n(0i16, ms(60)));
        }
        let mut buf = vec![0i16; ms(len)];
        SineGenerator::new(freq, rate, 0.25).fill(&mut buf);
        out.extend_from_slice(&buf);
    }
    Clip16::new(rate, out)
}

fn tones_for(c: Cue) -> Clip16 {
    const R: u32 = 16_000;
    match c {
        Cue::EnterPin => beeps(R, &[(600.0, 150), (900.0, 150)]),
        Cue::WrongPin | Cue::Denied => beeps(R, &[(300.0, 500)]),
        Cue::Muted => beeps(R, &[(400.0, 120), (400.0, 120)]),
        Cue::Unmuted | Cue::Done => beeps(R, &[(800.0, 150)]),
        Cue::Locked => beeps(R, &[(500.0, 100), (500.0, 100), (500.0, 100)]),
        Cue::Unlocked => beeps(R, &[(700.0, 100), (700.0, 100)]),
        Cue::AllMuted => beeps(R, &[(350.0, 100), (350.0, 100), (350.0, 100)]),
        Cue::AllUnmuted => beeps(R, &[(1200.0, 100), (1200.0, 100)]),
    }
}

/// The cue as a spoken prompt where one exists (falling back to its tones), else its tones.
fn cue(c: Cue) -> Box<dyn CaptureDevice> {
    let prompt = match c {
        Cue::EnterPin => Some(Prompt::ConfEnterPin),
        Cue::WrongPin => Some(Prompt::ConfWrongPin),
        Cue::Locked => Some(Prompt::ConfLocked),
        Cue::Muted => Some(Prompt::ConfMuted),
        Cue::Unmuted => Some(Prompt::ConfUnmuted),
        Cue::Unlocked | Cue::Denied | Cue::Done | Cue::AllMuted | Cue::AllUnmuted => None,
    };
    match prompt.map(|p| p.pcm(16_000)) {
        Some(Ok(pcm)) if !pcm.is_empty() => Box::new(Clip16::new(16_000, pcm)),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "conference prompt unusable; playing tones");
            Box::new(tones_for(c))
        }
        _ => Box::new(tones_for(c)),
    }
}

/// The device rate that matches a leg's codec (so the session does not resample twice).
fn codec_rate(codec: &str, fallback: u32) -> u32 {
    match codec.to_ascii_lowercase().as_str() {
        "pcmu" | "pcma" => 8_000,
        "g722" => 16_000,
        "opus" => 48_000,
        _ => fallback,
    }
}

/// Serves one INVITE to `conf-<room>@domain` (`room` without the prefix): PIN, join, DTMF
/// commands, leave.
pub async fn handle(ctx: Arc<MediaCtx>, mut leg: Leg, room: String) {
    let svc = service(&ctx);
    let room = match svc.room(&room) {
        Ok(r) => r,
        Err(Refusal(status, reason)) => {
            leg.reject(status, reason);
            return;
        }
    };
    let room = run_participant(&svc, room, &mut leg).await;
    svc.release(&room);
}

/// What the PIN step decided.
enum Entry {
    Participant,
    Moderator,
    Refused,
}

async fn ask_pin(svc: &Conferences, room: &Room, leg: &mut Leg) -> Entry {
    let pin = room.settings.pin.as_deref().filter(|p| !p.is_empty());
    let mod_pin = room
        .settings
        .moderator_pin
        .as_deref()
        .filter(|p| !p.is_empty());
    for _ in 0..svc.config.pin_tries.max(1) {
        let first = match leg.play_interruptible(cue(Cue::EnterPin)).await {
            PlayResult::Hangup => return Entry::Refused,
            PlayResult::Digit(d) => d.to_string(),
            PlayResult::Finished => String::new(),
        };
        let digits = leg
            .collect_more(first, 32, Some('#'), PIN_FIRST, PIN_BETWEEN)
            .await;
        if digits.hangup {
            return Entry::Refused;
        }
        if mod_pin.is_some_and(|p| p == digits.digits) {
            return Entry::Moderator;
        }
        match pin {
            Some(p) if p == digits.digits => return Entry::Participant,
            None if digits.digits.is_empty() => return Entry::Participant,
            _ => {}
        }
        let _ = leg.play(cue(Cue::WrongPin)).await;
    }
    Entry::Refused
}

/// Runs one participant from the answer to the hangup; returns the room it was in (a fresh
/// one if the room it called was forgotten meanwhile).
async fn run_participant(svc: &Conferences, mut room: Arc<Room>, leg: &mut Leg) -> Arc<Room> {
    let needs_pin = room.settings.pin.as_deref().is_some_and(|p| !p.is_empty())
        || room
            .settings
            .moderator_pin
            .as_deref()
            .is_some_and(|p| !p.is_empty());
    {
        let inner = lock(&room.inner);
        if inner.locked
            && room
                .settings
                .moderator_pin
                .as_deref()
                .is_none_or(str::is_empty)
        {
            drop(inner);
            leg.reject(403, "Conference Locked");
            return room;
        }
        if inner.members.len() >= room.max_participants {
            drop(inner);
            leg.reject(486, "Conference Full");
            return room;
        }
    }
    if let Err(e) = leg.answer().await {
        tracing::debug!(error = %e, room = %room.settings.name, "conference leg not answered");
        return room;
    }
    let moderator = if needs_pin {
        match ask_pin(svc, &room, leg).await {
            Entry::Participant => false,
            Entry::Moderator => true,
            Entry::Refused => {
                leg.hangup().await;
                return room;
            }
        }
    } else {
        false
    };
    let rate = leg
        .media()
        .map(|m| codec_rate(&m.quality().codec, room.mixer_rate))
        .unwrap_or(room.mixer_rate);
    let kick = Arc::new(Notify::new());
    let joined = loop {
        let mut inner = lock(&room.inner);
        if inner.removed {
            // Forgotten while we answered: enter the room that has the name now.
            drop(inner);
            match svc.room(&room.settings.name) {
                Ok(r) => {
                    room = r;
                    continue;
                }
                Err(_) => break Err(Cue::Denied),
            }
        }
        break if inner.locked && !moderator {
            Err(Cue::Locked)
        } else if inner.members.len() >= room.max_participants {
            Err(Cue::Denied)
        } else {
            join_locked(&room, &mut inner, leg, rate, moderator, &kick)
        };
    };
    let pid = match joined {
        Ok(pid) => pid,
        Err(c) => {
            let _ = leg.play(cue(c)).await;
            leg.hangup().await;
            return room;
        }
    };
    room.changed();
    participant_loop(&room, leg, pid, moderator, &kick).await;
    leave(&room, pid);
    leg.hangup().await;
    room
}

/// Adds the leg to the room (starting the mixer for the first one); called with the room locked.
fn join_locked(
    room: &Arc<Room>,
    inner: &mut RoomInner,
    leg: &mut Leg,
    rate: u32,
    moderator: bool,
    kick: &Arc<Notify>,
) -> Result<ParticipantId, Cue> {
    if inner.mixer.is_none() {
        let config = MixerConfig {
            rate: room.mixer_rate,
            max_participants: room.max_participants,
            ..MixerConfig::default()
        };
        match Mixer::start(config) {
            Ok(m) => {
                spawn_speaking_watch(Arc::downgrade(room), m.events());
                inner.mixer = Some(m);
            }
            Err(e) => {
                tracing::warn!(error = %e, "conference mixer did not start");
                return Err(Cue::Denied);
            }
        }
    }
    let Some(mixer) = inner.mixer.as_ref() else {
        return Err(Cue::Denied);
    };
    let (pid, capture, playback) = mixer.join(rate).map_err(|e| {
        tracing::debug!(error = %e, "conference join refused by the mixer");
        Cue::Denied
    })?;
    leg.set_devices(Box::new(capture), Box::new(playback));
    if room.tones && !inner.members.is_empty() {
        let _ = mixer.play_all(Box::new(join_tone(16_000)), Some(pid));
    }
    let seq = inner.next_seq;
    inner.next_seq += 1;
    inner.members.push(Member {
        pid,
        seq,
        uri: leg.caller().to_string(),
        display: leg.caller_name().map(str::to_owned),
        moderator,
        muted: false,
        joined: SystemTime::now(),
        kick: Arc::clone(kick),
    });
    Ok(pid)
}

/// Turns the mixer's speaking changes into roster changes while the mixer lives.
fn spawn_speaking_watch(room: Weak<Room>, mut events: broadcast::Receiver<MixerEvent>) {
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(MixerEvent::Speaking { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    match room.upgrade() {
                        Some(r) => r.changed(),
                        None => break,
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

fn leave(room: &Room, pid: ParticipantId) {
    let mut inner = lock(&room.inner);
    inner.members.retain(|m| m.pid != pid);
    let empty = inner.members.is_empty();
    if let Some(mixer) = inner.mixer.as_ref() {
        mixer.leave(pid);
        if room.tones && !empty {
            let _ = mixer.play_all(Box::new(leave_tone(16_000)), None);
        }
    }
    // The last one out stops the mixer (joining its clock thread, outside the room's lock); the
    // next participant starts a fresh one.
    let stopped = if empty { inner.mixer.take() } else { None };
    drop(inner);
    drop(stopped);
    room.changed();
}

/// Plays a cue into one participant's mix (replacing the cue it may still be hearing).
fn feedback(room: &Room, pid: ParticipantId, c: Cue) {
    let inner = lock(&room.inner);
    if let Some(mixer) = inner.mixer.as_ref() {
        mixer.stop_clips(Some(pid));
        let _ = mixer.play_to(pid, cue(c));
    }
}

async fn participant_loop(
    room: &Arc<Room>,
    leg: &mut Leg,
    pid: ParticipantId,
    moderator: bool,
    kick: &Arc<Notify>,
) {
    let mut star_at: Option<Instant> = None;
    loop {
        let ev = tokio::select! {
            ev = leg.next_event() => ev,
            () = kick.notified() => {
                feedback(room, pid, Cue::Denied);
                tokio::time::sleep(Duration::from_millis(600)).await;
                return;
            }
        };
        let digit = match ev {
            None | Some(LegEvent::Hangup) => return,
            Some(LegEvent::Dtmf(d)) => d,
            Some(LegEvent::RtpTimeout) => {
                tracing::debug!(room = %room.settings.name, %pid, "participant sends no RTP");
                continue;
            }
            Some(_) => continue,
        };
        if digit == '*' {
            star_at = Some(Instant::now());
            continue;
        }
        let Some(at) = star_at.take() else { continue };
        if at.elapsed() > COMMAND_WINDOW {
            continue;
        }
        command(room, pid, moderator, digit);
    }
}

/// Runs the DTMF command `*<digit>` of participant `pid`.
fn command(room: &Room, pid: ParticipantId, moderator: bool, digit: char) {
    let cue_for_me = {
        let mut inner = lock(&room.inner);
        let RoomInner {
            mixer,
            members,
            locked,
            ..
        } = &mut *inner;
        let Some(mixer) = mixer.as_ref() else { return };
        match (digit, moderator) {
            ('6', _) => {
                let Some(me) = members.iter_mut().find(|m| m.pid == pid) else {
                    return;
                };
                me.muted = !me.muted;
                let _ = mixer.set_muted(pid, me.muted);
                if me.muted { Cue::Muted } else { Cue::Unmuted }
            }
            ('1', true) => {
                let mute = members.iter().any(|m| m.pid != pid && !m.muted);
                for m in members.iter_mut().filter(|m| m.pid != pid) {
                    m.muted = mute;
                }
                mixer.set_all_muted(mute, Some(pid));
                if mute { Cue::AllMuted } else { Cue::AllUnmuted }
            }
            ('2', true) => {
                *locked = !*locked;
                if *locked { Cue::Locked } else { Cue::Unlocked }
            }
            ('3', true) => {
                match members
                    .iter()
                    .filter(|m| m.pid != pid)
                    .max_by_key(|m| m.seq)
                {
                    Some(last) => {
                        last.kick.notify_one();
                        Cue::Done
                    }
                    None => Cue::Denied,
                }
            }
            ('1' | '2' | '3', false) => Cue::Denied,
            _ => return,
        }
    };
    feedback(room, pid, cue_for_me);
    room.changed();
}

/// Serves an out-of-dialog non-INVITE request to `conf-<room>@domain`: `SUBSCRIBE` with
/// `Event: conference` (RFC 4575) starts a subscription; other methods get 405.
pub fn handle_request(ctx: Arc<MediaCtx>, req: ServerRequest, room: String) {
    let tag = random_tag();
    let respond = |status: u16, reason: &str, extra: &[(HeaderName, String)]| {
        let mut r = response_with_tag(&req.request, status, reason, &tag);
        for (n, v) in extra {
            r.headers.push(n.clone(), v.clone());
        }
        ctx.endpoint().respond(req.tx, r);
    };
    if req.request.method != Method::Subscribe {
        respond(
            405,
            "Method Not Allowed",
            &[(HeaderName::Allow, ALLOW.into())],
        );
        return;
    }
    let event = req.request.headers.get_str(&HeaderName::Event).map(|e| {
        e.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if event.as_deref() != Some("conference") {
        respond(
            489,
            "Bad Event",
            &[(
                HeaderName::Other("Allow-Events".into()),
                "conference".into(),
            )],
        );
        return;
    }
    if !accepts_conference_info(&req.request) {
        respond(
            406,
            "Not Acceptable",
            &[(HeaderName::Accept, ci::CONTENT_TYPE.into())],
        );
        return;
    }
    let svc = service(&ctx);
    let max = svc.config.max_expires_secs.max(MIN_EXPIRES);
    let expires = match req.request.headers.expires() {
        Ok(e) => e.unwrap_or(max).min(max),
        Err(_) => {
            respond(400, "Bad Expires", &[]);
            return;
        }
    };
    if expires != 0 && expires < MIN_EXPIRES {
        respond(
            423,
            "Interval Too Brief",
            &[(HeaderName::MinExpires, MIN_EXPIRES.to_string())],
        );
        return;
    }
    let room = loop {
        let room = match svc.room(&room) {
            Ok(r) => r,
            Err(Refusal(status, reason)) => {
                respond(status, reason, &[]);
                return;
            }
        };
        let mut inner = lock(&room.inner);
        if inner.removed {
            continue;
        }
        if inner.subscriptions >= svc.config.max_subscriptions {
            drop(inner);
            respond(
                503,
                "Too Many Watchers",
                &[(HeaderName::RetryAfter, "30".into())],
            );
            svc.release(&room);
            return;
        }
        inner.subscriptions += 1;
        drop(inner);
        break room;
    };
    let mut dialog = match Dialog::from_uas(&req.request, &tag) {
        Ok(d) => d,
        Err(e) => {
            lock(&room.inner).subscriptions -= 1;
            respond(400, &format!("Bad Request ({e})"), &[]);
            svc.release(&room);
            return;
        }
    };
    let contact = ctx.contact(&format!("conf-{}", room.settings.name));
    dialog.local_contact = Some(NameAddr::new(contact.clone()));
    dialog.confirm();
    let inbox = ctx.register_dialog(dialog.id.call_id.as_str(), &tag);
    let mut ok = response_with_tag(&req.request, 200, "OK", &tag);
    for rr in req.request.headers.get_all(&HeaderName::RecordRoute) {
        ok.headers.push(HeaderName::RecordRoute, rr.clone());
    }
    ok.headers.push(HeaderName::Contact, format!("<{contact}>"));
    ok.headers.push(HeaderName::Expires, expires.to_string());
    ctx.endpoint().respond(req.tx, ok);
    let sub = Subscription {
        ctx,
        svc,
        room,
        dialog,
        inbox,
        expires_at: Instant::now() + Duration::from_secs(u64::from(expires)),
        version: 0,
    };
    tokio::spawn(sub.run(expires == 0));
}

/// Whether the SUBSCRIBE's Accept allows conference-info (no Accept means the package default).
fn accepts_conference_info(req: &Request) -> bool {
    let values: Vec<String> = req
        .headers
        .get_all(&HeaderName::Accept)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
        .collect();
    values.is_empty()
        || values
            .iter()
            .any(|v| v == ci::CONTENT_TYPE || v == "*/*" || v == "application/*")
}

/// One watcher of a room.
struct Subscription {
    ctx: Arc<MediaCtx>,
    svc: Arc<Conferences>,
    room: Arc<Room>,
    dialog: Dialog,
    inbox: super::DialogInbox,
    expires_at: Instant,
    version: u32,
}

/// Why a subscription ended (the Subscription-State reason, RFC 6665 §4.1.3).
enum Ending {
    /// The watcher unsubscribed (Expires: 0) or the subscription ran out.
    Timeout,
    /// The watcher is gone (NOTIFY failed) or the server stops: no final NOTIFY.
    Silent,
}

impl Subscription {
    async fn run(mut self, unsubscribe_at_once: bool) {
        let mut changes = self.room.changes.subscribe();
        changes.mark_unchanged();
        let interval = Duration::from_millis(self.svc.config.notify_interval_ms);
        let ending = if unsubscribe_at_once {
            Ending::Timeout
        } else if !self.notify(false).await {
            Ending::Silent
        } else {
            let mut last = Instant::now();
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            break Ending::Silent;
                        }
                        let next = last + interval;
                        if Instant::now() < next {
                            tokio::time::sleep_until(next).await;
                        }
                        changes.mark_unchanged();
                        last = Instant::now();
                        if !self.notify(false).await {
                            break Ending::Silent;
                        }
                    }
                    msg = self.inbox.recv() => match msg {
                        None => break Ending::Silent,
                        Some(DialogMessage::Request(r)) => {
                            if self.on_request(r) {
                                break Ending::Timeout;
                            }
                        }
                        Some(_) => {}
                    },
                    () = tokio::time::sleep_until(self.expires_at) => break Ending::Timeout,
                }
            }
        };
        if matches!(ending, Ending::Timeout) {
            let _ = self.notify(true).await;
        }
        lock(&self.room.inner).subscriptions -= 1;
        self.svc.release(&self.room);
    }

    /// Answers an in-dialog request; true when it ends the subscription (refresh with Expires 0).
    fn on_request(&mut self, r: ServerRequest) -> bool {
        let tag = self.dialog.id.local_tag.clone();
        if r.request.method != Method::Subscribe {
            let resp = response_with_tag(&r.request, 405, "Method Not Allowed", &tag);
            self.ctx.endpoint().respond(r.tx, resp);
            return false;
        }
        let max = self.svc.config.max_expires_secs.max(MIN_EXPIRES);
        let expires = match r.request.headers.expires() {
            Ok(e) => e.unwrap_or(max).min(max),
            Err(_) => {
                let resp = response_with_tag(&r.request, 400, "Bad Expires", &tag);
                self.ctx.endpoint().respond(r.tx, resp);
                return false;
            }
        };
        if expires != 0 && expires < MIN_EXPIRES {
            let mut resp = response_with_tag(&r.request, 423, "Interval Too Brief", &tag);
            resp.headers
                .push(HeaderName::MinExpires, MIN_EXPIRES.to_string());
            self.ctx.endpoint().respond(r.tx, resp);
            return false;
        }
        let mut resp = response_with_tag(&r.request, 200, "OK", &tag);
        resp.headers.push(HeaderName::Expires, expires.to_string());
        self.ctx.endpoint().respond(r.tx, resp);
        if expires == 0 {
            return true;
        }
        self.expires_at = Instant::now() + Duration::from_secs(u64::from(expires));
        // A refresh gets the current state (RFC 6665 §4.2.1.2).
        self.room.changed();
        false
    }

    /// Sends one NOTIFY with the full state; false when the watcher is gone.
    async fn notify(&mut self, terminated: bool) -> bool {
        self.version = self.version.wrapping_add(1);
        let doc = self.room.document(Some(self.version));
        let mut req = self.dialog.new_request(Method::Notify);
        req.headers.push(HeaderName::Event, "conference");
        req.headers.push(
            HeaderName::SubscriptionState,
            subscription_state(terminated, self.expires_at),
        );
        req.headers.push(HeaderName::ContentType, ci::CONTENT_TYPE);
        req.body = Bytes::from(doc.to_xml());
        match final_response(self.ctx.endpoint(), req, self.ctx.proxy_flow()).await {
            Ok(r) if (200..300).contains(&r.status) => true,
            Ok(r) => {
                tracing::debug!(
                    status = r.status,
                    "conference NOTIFY refused; subscription ends"
                );
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "conference NOTIFY failed; subscription ends");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conferences(config: ConferenceConfig) -> Conferences {
        Conferences {
            config,
            domain: "lab.test".into(),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn rooms_are_created_released_and_refused() {
        let svc = conferences(ConferenceConfig {
            max_rooms: 2,
            rooms: vec![RoomConfig {
                name: "static".into(),
                pin: Some("1".into()),
                ..RoomConfig::default()
            }],
            ..ConferenceConfig::default()
        });
        let a = svc.room("a").unwrap();
        assert!(Arc::ptr_eq(&a, &svc.room("a").unwrap()));
        assert_eq!(a.entity, "sip:conf-a@lab.test");
        assert_eq!(
            svc.room("no spaces").err(),
            Some(Refusal(404, "No Such Conference"))
        );
        let st = svc.room("static").unwrap();
        assert_eq!(st.settings.pin.as_deref(), Some("1"));
        assert_eq!(svc.room("b").err().map(|r| r.0), Some(503));
        // An idle dynamic room is forgotten and marked, so nobody enters the old object.
        svc.release(&a);
        assert!(lock(&a.inner).removed);
        let a2 = svc.room("a").unwrap();
        assert!(!Arc::ptr_eq(&a, &a2));
        // A watched room stays; a static one always stays.
        lock(&a2.inner).subscriptions = 1;
        svc.release(&a2);
        assert!(!lock(&a2.inner).removed);
        svc.release(&st);
        assert_eq!(svc.room_names(), ["a", "static"]);
        assert!(svc.snapshot("a").is_some() && svc.snapshot("zzz").is_none());
        let only_static = conferences(ConferenceConfig {
            create_on_join: false,
            ..ConferenceConfig::default()
        });
        assert_eq!(only_static.room("x").err().map(|r| r.0), Some(404));
        let off = conferences(ConferenceConfig {
            enabled: false,
            ..ConferenceConfig::default()
        });
        assert_eq!(off.room("x").err().map(|r| r.0), Some(404));
    }

    #[test]
    fn room_names() {
        assert!(valid_room_name("lab-1.a_b"));
        for bad in ["", "a b", "ä", "a@b", &"x".repeat(65)] {
            assert!(!valid_room_name(bad), "{bad}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_110_000_000);
        assert_eq!(rfc3339(t), "2005-03-05T05:20:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn codec_rates() {
        assert_eq!(codec_rate("PCMU", 48_000), 8_000);
        assert_eq!(codec_rate("G722", 48_000), 16_000);
        assert_eq!(codec_rate("opus", 16_000), 48_000);
        assert_eq!(codec_rate("x", 16_000), 16_000);
    }

    #[test]
    fn config_parses_static_rooms() {
        let cfg: ConferenceConfig = toml::from_str(
            r#"
            create_on_join = false
            [[rooms]]
            name = "team"
            pin = "1234"
            moderator_pin = "9999"
            locked = true
            "#,
        )
        .unwrap();
        assert!(!cfg.create_on_join);
        assert_eq!(cfg.rooms[0].pin.as_deref(), Some("1234"));
        assert!(cfg.rooms[0].locked);
        assert!(toml::from_str::<ConferenceConfig>("bogus = 1").is_err());
    }

    #[test]
    fn roster_document_reflects_members() {
        let cfg = ConferenceConfig::default();
        let room = Room::new(
            &cfg,
            "lab.test",
            RoomConfig {
                name: "demo".into(),
                locked: true,
                ..RoomConfig::default()
            },
            false,
        );
        {
            let mut inner = lock(&room.inner);
            for (i, (uri, moderator, muted)) in [
                ("sip:alice@lab.test", true, false),
                ("sip:bob@lab.test", false, true),
                ("sip:alice@lab.test", false, false),
            ]
            .into_iter()
            .enumerate()
            {
                inner.members.push(Member {
                    pid: ParticipantId(i as u64 + 1),
                    seq: i as u64 + 1,
                    uri: uri.into(),
                    display: None,
                    moderator,
                    muted,
                    joined: SystemTime::UNIX_EPOCH,
                    kick: Arc::new(Notify::new()),
                });
            }
        }
        let doc = room.document(Some(7));
        let back = ConferenceInfo::parse(doc.to_xml().as_bytes()).unwrap();
        assert_eq!(back, doc);
        assert_eq!(back.entity, "sip:conf-demo@lab.test");
        assert_eq!(back.version, Some(7));
        let st = back.conference_state.unwrap();
        assert_eq!((st.user_count, st.locked), (Some(3), Some(true)));
        assert_eq!(back.users.len(), 2, "alice's two legs are one user");
        assert_eq!(back.users[0].endpoints.len(), 2);
        assert_eq!(back.users[0].roles, ["moderator"]);
        assert!(back.users[1].is_muted());
        assert!(!back.users[0].is_speaking());
    }

    #[test]
    fn cues_are_short_and_audible() {
        for c in [
            Cue::EnterPin,
            Cue::WrongPin,
            Cue::Muted,
            Cue::Unmuted,
            Cue::Locked,
            Cue::Unlocked,
            Cue::Denied,
            Cue::Done,
            Cue::AllMuted,
            Cue::AllUnmuted,
        ] {
            let mut tones = tones_for(c);
            let mut buf = vec![0i16; 16_000];
            assert!(tones.read_frame(&mut buf).unwrap());
            let mut rest = vec![0i16; 16];
            assert!(
                !tones.read_frame(&mut rest).unwrap(),
                "{c:?} tones longer than 1 s"
            );
            // The spoken prompts decode and end within 6 s.
            let mut spoken = cue(c);
            assert_eq!(spoken.rate(), 16_000);
            let mut six = vec![0i16; 6 * 16_000];
            assert!(spoken.read_frame(&mut six).unwrap(), "{c:?}");
            assert!(tandem_media::tone::rms(&six) > 100.0, "{c:?} is silent");
            assert!(
                !spoken.read_frame(&mut rest).unwrap(),
                "{c:?} longer than 6 s"
            );
        }
    }
}
