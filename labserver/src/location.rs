//! The location service: bindings per address-of-record, cached in memory, persisted in the store.
//!
//! Every lookup and update is served from memory. Changes are recorded in a dirty set keyed by
//! (AoR, contact) — so at most one pending write per binding, which bounds the backlog by the number
//! of bindings — and a background writer task drains that set into the store. The REGISTER path
//! therefore never waits on the database; [`Location::flush`] writes everything pending (used on
//! shutdown).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::store::{Binding, Store, StoreError};
use tandem_proto::Flow;
use tandem_proto::msg::{Host, Uri};
use tandem_proto::spread::SpreadMap;

/// How often expired bindings are swept from memory and purged from the store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Upper bound on binding writes in one store transaction.
const WRITE_BATCH: usize = 1024;
/// How long the writer lets changes accumulate before writing them (unless enough are pending).
const FLUSH_INTERVAL: Duration = Duration::from_millis(150);
/// Pending writes that start a write at once, without waiting for [`FLUSH_INTERVAL`].
const FLUSH_THRESHOLD: usize = 256;

/// Errors of the location service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// The backing store failed.
    #[error("location store: {0}")]
    Store(#[from] StoreError),
}

/// A pending write for one (AoR, contact) pair.
#[derive(Debug, Clone)]
enum Pending {
    Save(Box<Binding>),
    Delete,
}

#[derive(Default)]
struct State {
    /// AoR → bindings (unsorted, no spare capacity).
    bindings: SpreadMap<Arc<str>, Vec<Binding>>,
    /// Contact URI (as stored) → AoR, for routing in-dialog requests to registered flows.
    by_contact: SpreadMap<Box<str>, Arc<str>>,
    /// Writes not yet in the store.
    dirty: HashMap<(String, String), Pending>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the dirty set becomes non-empty.
    wake: Notify,
    /// Signalled when the dirty set reaches [`FLUSH_THRESHOLD`] (or the service closes).
    full: Notify,
    store: Store,
    closed: AtomicBool,
    /// Serialises writers so that pending writes reach the store in order.
    write_lock: tokio::sync::Mutex<()>,
}

/// The in-memory location service with write-behind persistence.
#[derive(Clone)]
pub struct Location {
    shared: Arc<Shared>,
}

/// The background tasks of a [`Location`]; stop them with [`LocationTasks::stop`].
pub struct LocationTasks {
    writer: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

impl LocationTasks {
    /// Aborts the writer and sweeper tasks (call [`Location::flush`] first).
    pub fn stop(self) {
        self.writer.abort();
        self.sweeper.abort();
    }
}

impl Location {
    /// Loads all unexpired bindings from `store` into a new location service (no background tasks yet).
    pub async fn load(store: Store, now_unix: i64) -> Result<Location, LocationError> {
        let rows = store.load_bindings(now_unix).await?;
        let mut bindings: HashMap<Arc<str>, Vec<Binding>> = HashMap::new();
        let mut by_contact: HashMap<Box<str>, Arc<str>> = HashMap::new();
        for b in rows {
            if b.expires_at <= now_unix {
                continue;
            }
            let key: Arc<str> = bindings
                .get_key_value(b.aor.as_str())
                .map_or_else(|| Arc::from(b.aor.as_str()), |(k, _)| Arc::clone(k));
            by_contact.insert(b.contact.as_str().into(), Arc::clone(&key));
            bindings.entry(key).or_default().push(b);
        }
        for v in bindings.values_mut() {
            v.shrink_to_fit();
        }
        let state = State {
            bindings: SpreadMap::from_map(bindings),
            by_contact: SpreadMap::from_map(by_contact),
            dirty: HashMap::new(),
        };
        Ok(Location {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                wake: Notify::new(),
                full: Notify::new(),
                store,
                closed: AtomicBool::new(false),
                write_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Starts the write-behind task and the expiry sweeper (needs a tokio runtime).
    pub fn spawn_tasks(&self) -> LocationTasks {
        let writer = {
            let this = self.clone();
            tokio::spawn(async move { this.writer_loop().await })
        };
        let sweeper = {
            let this = self.clone();
            tokio::spawn(async move { this.sweeper_loop().await })
        };
        LocationTasks { writer, sweeper }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // breaks invariants we rely on, so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The unexpired bindings of `aor`, highest q first (no q counts as 1.0), then most recent first.
    pub fn lookup(&self, aor: &str, now_unix: i64) -> Vec<Binding> {
        let state = self.lock();
        let mut out: Vec<Binding> = state
            .bindings
            .get(aor)
            .map(|v| {
                v.iter()
                    .filter(|b| b.expires_at > now_unix)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        drop(state);
        sort_by_preference(&mut out);
        out
    }

    /// The unexpired binding registered with exactly this contact URI string, if any.
    pub fn find_contact(&self, contact: &str, now_unix: i64) -> Option<Binding> {
        let state = self.lock();
        let aor = state.by_contact.get(contact)?;
        state
            .bindings
            .get(&**aor)?
            .iter()
            .find(|b| b.contact == contact && b.expires_at > now_unix)
            .cloned()
    }

    /// Number of AoRs with at least one binding held in memory.
    pub fn aor_count(&self) -> usize {
        self.lock().bindings.len()
    }

    /// Atomically updates the bindings of `aor`: `f` edits a copy of the unexpired bindings and the
    /// copy replaces them only if `f` returns `Ok`; the changes are then queued for the store.
    pub fn update<T, E>(
        &self,
        aor: &str,
        now_unix: i64,
        f: impl FnOnce(&mut Vec<Binding>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let live = |b: &&Binding| b.expires_at > now_unix;
        let mut new: Vec<Binding> = state
            .bindings
            .get(aor)
            .map(|v| v.iter().filter(live).cloned().collect())
            .unwrap_or_default();
        let result = f(&mut new)?;
        // Held for a long time: no spare capacity (a Vec grown by push reserves four).
        new.shrink_to_fit();
        let was_clean = state.dirty.is_empty();
        // One shared copy of the AoR serves as the key here and in `by_contact`.
        let key: Arc<str> = state
            .bindings
            .get_key_value(aor)
            .map_or_else(|| Arc::from(aor), |(k, _)| Arc::clone(k));
        let old: &[Binding] = state.bindings.get(aor).map_or(&[], Vec::as_slice);
        // Removed (or re-keyed) bindings.
        for b in old.iter().filter(live) {
            if !new.iter().any(|n| n.contact == b.contact) {
                state.by_contact.remove(b.contact.as_str());
                state
                    .dirty
                    .insert((aor.to_string(), b.contact.clone()), Pending::Delete);
            }
        }
        // New or changed bindings.
        for n in &new {
            let changed = match old.iter().filter(live).find(|b| b.contact == n.contact) {
                Some(b) => !same_binding(b, n),
                None => true,
            };
            if changed {
                state
                    .by_contact
                    .insert(n.contact.as_str().into(), Arc::clone(&key));
                state.dirty.insert(
                    (aor.to_string(), n.contact.clone()),
                    Pending::Save(Box::new(n.clone())),
                );
            }
        }
        if new.is_empty() {
            state.bindings.remove(aor);
        } else {
            state.bindings.insert(key, new);
        }
        let pending = state.dirty.len();
        drop(guard);
        if was_clean && pending > 0 {
            self.shared.wake.notify_one();
        }
        if pending >= FLUSH_THRESHOLD {
            self.shared.full.notify_one();
        }
        Ok(result)
    }

    /// Removes expired bindings from memory (the store purges its own copy); returns how many.
    pub fn sweep(&self, now_unix: i64) -> usize {
        let mut state = self.lock();
        let state = &mut *state;
        let mut removed = 0;
        let by_contact = &mut state.by_contact;
        state.bindings.retain(|_, v| {
            let before = v.len();
            v.retain(|b| {
                let keep = b.expires_at > now_unix;
                if !keep {
                    by_contact.remove(b.contact.as_str());
                }
                keep
            });
            if v.len() != before {
                removed += before - v.len();
                v.shrink_to_fit();
            }
            !v.is_empty()
        });
        // Memory back after a burst of registrations expired (moved over later updates).
        state.bindings.maybe_shrink();
        state.by_contact.maybe_shrink();
        removed
    }

    /// Number of binding writes not yet in the store.
    pub fn pending_writes(&self) -> usize {
        self.lock().dirty.len()
    }

    /// Writes every pending change to the store now.
    pub async fn flush(&self) -> Result<(), LocationError> {
        loop {
            let _guard = self.shared.write_lock.lock().await;
            let batch = self.take_batch(usize::MAX);
            if batch.is_empty() {
                return Ok(());
            }
            if let Err((e, rest)) = self.write_batch(batch).await {
                self.requeue(rest);
                return Err(e);
            }
        }
    }

    /// Flushes pending writes and marks the service closed (the writer task exits).
    pub async fn close(&self) -> Result<(), LocationError> {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        self.shared.full.notify_one();
        self.flush().await
    }

    fn take_batch(&self, max: usize) -> Vec<((String, String), Pending)> {
        let mut state = self.lock();
        if state.dirty.len() <= max {
            return state.dirty.drain().collect();
        }
        let keys: Vec<(String, String)> = state.dirty.keys().take(max).cloned().collect();
        keys.into_iter()
            .filter_map(|k| state.dirty.remove(&k).map(|p| (k, p)))
            .collect()
    }

    /// Puts failed writes back unless a newer change for the same binding arrived meanwhile.
    fn requeue(&self, rest: Vec<((String, String), Pending)>) {
        let mut state = self.lock();
        for (k, p) in rest {
            state.dirty.entry(k).or_insert(p);
        }
    }

    /// Writes a batch in one store transaction; on failure returns the error and the batch (none
    /// of it was written).
    async fn write_batch(
        &self,
        batch: Vec<((String, String), Pending)>,
    ) -> Result<(), (LocationError, Vec<((String, String), Pending)>)> {
        let mut saves: Vec<Binding> = Vec::new();
        let mut deletes: Vec<(String, String)> = Vec::new();
        // The dirty set holds at most one pending write per key, so saves and deletes never
        // overlap and their relative order does not matter.
        let mut keys: Vec<(String, String)> = Vec::with_capacity(batch.len());
        for (key, pending) in batch {
            match pending {
                Pending::Save(b) => {
                    saves.push(*b);
                    keys.push(key);
                }
                Pending::Delete => deletes.push(key),
            }
        }
        match self.shared.store.write_bindings(&saves, &deletes).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let rest = keys
                    .into_iter()
                    .zip(saves)
                    .map(|(k, b)| (k, Pending::Save(Box::new(b))))
                    .chain(deletes.into_iter().map(|k| (k, Pending::Delete)))
                    .collect();
                Err((LocationError::Store(e), rest))
            }
        }
    }

    async fn writer_loop(self) {
        loop {
            let pending = self.lock().dirty.len();
            let closed = self.shared.closed.load(Ordering::SeqCst);
            if pending == 0 {
                if closed {
                    return;
                }
                self.shared.wake.notified().await;
                continue;
            }
            // Let changes accumulate so that one transaction carries many of them.
            if pending < FLUSH_THRESHOLD && !closed {
                tokio::select! {
                    () = tokio::time::sleep(FLUSH_INTERVAL) => {}
                    () = self.shared.full.notified() => {}
                }
            }
            let failed = {
                let _guard = self.shared.write_lock.lock().await;
                let batch = self.take_batch(WRITE_BATCH);
                match self.write_batch(batch).await {
                    Ok(()) => false,
                    Err((e, rest)) => {
                        tracing::warn!(error = %e, pending = rest.len(), "binding write failed, will retry");
                        self.requeue(rest);
                        true
                    }
                }
            };
            if failed {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    async fn sweeper_loop(self) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = unix_now();
            let removed = self.sweep(now);
            if removed > 0 {
                tracing::debug!(removed, "expired bindings swept");
            }
            if let Err(e) = self.shared.store.purge_expired(now).await {
                tracing::warn!(error = %e, "purging expired bindings failed");
            }
        }
    }
}

/// Sorts bindings by preference: highest q first (absent q = 1.0), then the latest expiry first.
pub fn sort_by_preference(bindings: &mut [Binding]) {
    bindings.sort_by(|a, b| {
        let qa = a.q.unwrap_or(1.0);
        let qb = b.q.unwrap_or(1.0);
        qb.total_cmp(&qa).then(b.expires_at.cmp(&a.expires_at))
    });
}

fn same_binding(a: &Binding, b: &Binding) -> bool {
    a.aor == b.aor
        && a.contact == b.contact
        && a.expires_at == b.expires_at
        && a.q == b.q
        && a.call_id == b.call_id
        && a.cseq == b.cseq
        && a.flow == b.flow
        && a.user_agent == b.user_agent
        && a.instance == b.instance
        && a.reg_id == b.reg_id
        && a.features == b.features
}

/// RFC 3840 §9 base feature tags (without the `+` every other tag carries).
const BASE_FEATURE_TAGS: [&str; 18] = [
    "audio",
    "automata",
    "class",
    "duplex",
    "data",
    "control",
    "mobility",
    "description",
    "events",
    "priority",
    "methods",
    "schemes",
    "application",
    "video",
    "language",
    "type",
    "isfocus",
    "actor",
];

/// True for a Contact header parameter that is an RFC 3840 feature tag worth keeping on a
/// binding (`+sip.instance` and `reg-id` have their own fields).
pub fn is_feature_tag(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower == "+sip.instance" {
        return false;
    }
    lower.starts_with('+') || BASE_FEATURE_TAGS.contains(&lower.as_str()) || lower == "text"
}

/// The feature tags among Contact header `params`, `;`-separated (`None` when there are none).
pub fn feature_text(params: &[(String, Option<String>)]) -> Option<String> {
    let mut out = String::new();
    for (name, value) in params.iter().filter(|(n, _)| is_feature_tag(n)) {
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    (!out.is_empty()).then_some(out)
}

impl Binding {
    /// The flow the binding's REGISTER arrived on (transport and source address), if recorded.
    pub fn flow_addr(&self) -> Option<Flow> {
        self.flow.as_deref().and_then(crate::proxy::parse_flow)
    }

    /// True when the registering UA is behind a NAT: the REGISTER's source address (its flow)
    /// differs from the Contact's host, or, on UDP, from the Contact's port (RFC 3581 logic).
    /// A binding without a recorded flow is taken as not NATed.
    pub fn is_nated(&self) -> bool {
        let Some(flow) = self.flow_addr() else {
            return false;
        };
        let Ok(uri) = Uri::parse(&self.contact) else {
            return true;
        };
        contact_differs_from_flow(&uri, flow)
    }

    /// True when the Contact was registered with feature tag `tag` (RFC 3840), e.g. `+sip.ice`;
    /// names compare case-insensitively, a `+sip.instance` tag is answered from its own field.
    pub fn has_feature(&self, tag: &str) -> bool {
        if tag.eq_ignore_ascii_case("+sip.instance") {
            return self.instance.is_some();
        }
        self.feature_tags()
            .any(|(n, _)| n.eq_ignore_ascii_case(tag))
    }

    /// The registered feature tags as (name, value) pairs, in Contact order.
    pub fn feature_tags(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.features
            .as_deref()
            .unwrap_or("")
            .split(';')
            .filter(|t| !t.trim().is_empty())
            .map(|t| match t.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (t.trim(), None),
            })
    }
}

/// True when a Contact URI is not the address a message arrived from: another host, or on UDP
/// another port (a UA behind a NAT, or one that lies about its address).
pub fn contact_differs_from_flow(uri: &Uri, flow: Flow) -> bool {
    let same_host = match &uri.host {
        Host::V4(ip) => std::net::IpAddr::V4(*ip) == flow.remote.ip(),
        Host::V6(ip) => std::net::IpAddr::V6(*ip) == flow.remote.ip(),
        Host::Domain(_) => false,
    };
    if !same_host {
        return true;
    }
    if flow.transport.is_reliable() {
        return false;
    }
    uri.port.unwrap_or(5060) != flow.remote.port()
}

/// The current time in whole seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The current time in milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn binding(aor: &str, contact: &str, expires_at: i64, q: Option<f32>) -> Binding {
        Binding {
            aor: aor.to_string(),
            contact: contact.to_string(),
            expires_at,
            q,
            call_id: "c1".to_string(),
            cseq: 1,
            flow: Some("udp:127.0.0.1:5070".to_string()),
            user_agent: None,
            instance: None,
            reg_id: None,
            features: None,
        }
    }

    #[tokio::test]
    async fn updates_are_atomic_ordered_and_written_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await.unwrap();
        let now = 1_000_000;
        let loc = Location::load(store.clone(), now).await.unwrap();
        let aor = "sip:alice@tandem.lab";
        loc.update(aor, now, |b| {
            b.push(binding(aor, "sip:a@192.0.2.1", now + 100, Some(0.1)));
            b.push(binding(aor, "sip:a@192.0.2.2", now + 100, None));
            b.push(binding(aor, "sip:a@192.0.2.3", now + 200, Some(0.5)));
            Ok::<(), ()>(())
        })
        .unwrap();
        let got: Vec<String> = loc
            .lookup(aor, now)
            .into_iter()
            .map(|b| b.contact)
            .collect();
        assert_eq!(
            got,
            ["sip:a@192.0.2.2", "sip:a@192.0.2.3", "sip:a@192.0.2.1"]
        );
        assert!(loc.find_contact("sip:a@192.0.2.3", now).is_some());
        // A failing update changes nothing.
        let r = loc.update(aor, now, |b| {
            b.clear();
            Err::<(), u16>(500)
        });
        assert_eq!(r, Err(500));
        assert_eq!(loc.lookup(aor, now).len(), 3);
        // Nothing reached the store yet (no writer task): flush writes it.
        assert_eq!(loc.pending_writes(), 3);
        loc.flush().await.unwrap();
        assert_eq!(loc.pending_writes(), 0);
        assert_eq!(store.load_bindings(now).await.unwrap().len(), 3);
        // Removal is written through too; expired bindings disappear from lookups.
        loc.update(aor, now, |b| {
            b.retain(|x| x.contact != "sip:a@192.0.2.1");
            Ok::<(), ()>(())
        })
        .unwrap();
        loc.flush().await.unwrap();
        assert_eq!(store.load_bindings(now).await.unwrap().len(), 2);
        assert_eq!(loc.lookup(aor, now + 150).len(), 1);
        assert_eq!(loc.sweep(now + 150), 1);
        assert!(loc.find_contact("sip:a@192.0.2.2", now + 150).is_none());
        // A new service over the same store sees what was written.
        let again = Location::load(store, now).await.unwrap();
        assert_eq!(again.lookup(aor, now).len(), 2);
    }

    #[tokio::test]
    async fn bindings_are_held_without_spare_capacity_or_duplicate_aors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await.unwrap();
        let now = 1_000_000;
        let loc = Location::load(store, now).await.unwrap();
        let aor = "sip:carol@tandem.lab";
        for c in ["sip:c@192.0.2.1", "sip:c@192.0.2.2"] {
            loc.update(aor, now, |b| {
                b.push(binding(aor, c, now + 100, None));
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        let state = loc.lock();
        let (key, list) = state.bindings.get_key_value(aor).unwrap();
        assert_eq!((list.len(), list.capacity()), (2, 2));
        for b in list {
            assert!(Arc::ptr_eq(
                key,
                state.by_contact.get(b.contact.as_str()).unwrap()
            ));
        }
    }

    #[tokio::test]
    async fn writer_task_drains_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await.unwrap();
        let now = unix_now();
        let loc = Location::load(store.clone(), now).await.unwrap();
        let tasks = loc.spawn_tasks();
        for i in 0..50 {
            let aor = format!("sip:u{i}@tandem.lab");
            loc.update(&aor, now, |b| {
                b.push(binding(
                    &aor,
                    &format!("sip:u{i}@192.0.2.9"),
                    now + 600,
                    None,
                ));
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        for _ in 0..100 {
            if loc.pending_writes() == 0 && store.load_bindings(now).await.unwrap().len() == 50 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.load_bindings(now).await.unwrap().len(), 50);
        loc.close().await.unwrap();
        tasks.stop();
    }

    #[test]
    fn nat_and_features_of_a_binding() {
        let mut b = binding("sip:a@x", "sip:a@192.168.1.10:5060", 100, None);
        b.flow = Some("udp:203.0.113.7:40000".to_string());
        assert!(b.is_nated(), "private contact behind another source");
        b.contact = "sip:a@203.0.113.7:40000".to_string();
        assert!(!b.is_nated(), "contact is the flow");
        b.contact = "sip:a@203.0.113.7".to_string();
        assert!(
            b.is_nated(),
            "UDP source port differs from the contact's 5060"
        );
        b.flow = Some("tcp:203.0.113.7:51234".to_string());
        assert!(!b.is_nated(), "TCP source ports are ephemeral");
        b.contact = "sip:a@client.invalid;transport=tcp".to_string();
        assert!(b.is_nated());
        b.flow = None;
        assert!(!b.is_nated(), "no flow recorded");

        assert!(!b.has_feature("+sip.ice"));
        b.features = feature_text(&[
            ("expires".to_string(), Some("60".to_string())),
            ("+sip.ICE".to_string(), None),
            (
                "+sip.instance".to_string(),
                Some("\"<urn:uuid:1>\"".to_string()),
            ),
            ("audio".to_string(), None),
            ("reg-id".to_string(), Some("1".to_string())),
            (
                "+sip.methods".to_string(),
                Some("\"INVITE,BYE\"".to_string()),
            ),
        ]);
        assert_eq!(
            b.features.as_deref(),
            Some("+sip.ICE;audio;+sip.methods=\"INVITE,BYE\"")
        );
        assert!(b.has_feature("+sip.ice"));
        assert!(b.has_feature("AUDIO"));
        assert!(!b.has_feature("video"));
        assert!(!b.has_feature("+sip.instance"));
        b.instance = Some("\"<urn:uuid:1>\"".to_string());
        assert!(b.has_feature("+sip.instance"));
        assert_eq!(
            feature_text(&[("q".to_string(), Some("1".to_string()))]),
            None
        );
    }
}
