//! Page-mode instant messages (RFC 3428) with store-and-forward for offline users.
//!
//! The proxy forwards a `MESSAGE` for a local address-of-record like any other request. [`Im`]
//! steps in at three points (hooks in `proxy.rs`):
//!
//! * the recipient already has stored messages: the new one is queued behind them (so that a
//!   live message never overtakes stored ones) and answered `202 Accepted`;
//! * the recipient has no binding (the proxy would answer 480): stored, `202`;
//! * every branch failed with 408, 480 or 503 (or timed out, or the transport failed): stored,
//!   `202`. Other final responses (488, 415, 403, …) are relayed to the sender, not stored.
//!
//! A message is stored durably (the insert is committed) before the `202` is sent. A
//! retransmitted submission (same From-tag, Call-ID and CSeq, e.g. after the lab server was
//! killed between the commit and the 202) is recognised and not stored twice.
//!
//! Delivery: when a REGISTER for the AoR succeeds (hook in `server.rs`), and periodically while
//! a registered user has stored messages, one worker per AoR sends them in submission order,
//! one at a time, forking to every binding: the next message only after the previous one got a
//! 2xx. Each attempt is first recorded in the store (`attempts`, `in_flight_at`,
//! `next_attempt_at` by exponential backoff); a 2xx deletes the row before the next message is
//! sent; a failure (408/480/486/5xx, timeout, transport) keeps it for a later attempt; a message
//! every device refuses for good (any other 3xx–6xx) is dropped and logged. Delivered messages
//! keep the original From, To, Content-Type and body byte for byte (a message/cpim body and its
//! DateTime are untouched), add `Date` (the submission time) and `Tandem-Stored-Id` (stable
//! across attempts and restarts; the Call-ID is `<stored-id>@<domain>` too).
//!
//! # Delivery guarantee
//!
//! Every message answered `202` is delivered, in submission order per recipient, until a device
//! answers 2xx, it expires (`max_age_days`) or every device refuses it with a non-transient
//! status. A 2xx is acted on exactly once: the row is deleted before anything else is sent. The
//! only duplicate possible is a re-send of the message that was in flight when the lab server
//! died (after the device's 2xx, before the delete committed): it carries the same
//! `Tandem-Stored-Id` and Call-ID (and the same CPIM `imdn.Message-ID` if the sender set one),
//! so a client that remembers the last ids it accepted delivers exactly once. A client that
//! does not is guaranteed at-least-once, with at most one duplicate per crash and recipient.
//!
//! "Durable" means committed: it survives the lab server being killed at any point. On SQLite
//! (WAL, `synchronous=NORMAL`) the last commits before an operating-system crash or power loss
//! may be lost; PostgreSQL with its default `synchronous_commit` keeps them too. A submission
//! answered 202 but retransmitted after its row was already delivered and deleted (a sender
//! retrying for longer than the delivery took) would be stored again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_net::{Endpoint, Target, TxOutcome};
use tandem_proto::msg::{HeaderName, Method, Request, Response, Uri};
use tokio::task::JoinSet;

use crate::location::{Location, unix_now, unix_now_ms};
use crate::proxy::Proxy;
use crate::registrar::{LocalDomains, http_date, reply};
use crate::store::{Binding, Store};
use crate::store_im::{InsertOutcome, NewStoredMessage, StoredMessage};

/// The header carrying a stored message's stable identity on every delivery attempt.
pub const STORED_ID_HEADER: &str = "Tandem-Stored-Id";

/// How often registered users with stored messages are looked at.
const TICK: Duration = Duration::from_secs(2);
/// How often expired messages are purged and the set of waiting AoRs is re-read from the store.
const SWEEP: Duration = Duration::from_secs(60);

/// `[im]`: page-mode messaging and store-and-forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImConfig {
    /// Store MESSAGEs for offline users and deliver them later; default true (when false,
    /// MESSAGE is proxied like any other request and offline users get 480).
    pub enabled: bool,
    /// Stored messages older than this are dropped undelivered; default 7.
    pub max_age_days: u32,
    /// Stored messages per recipient; a submission beyond it gets `486 Busy Here`; default 1000.
    pub max_per_user: u32,
    /// Backoff after the first failed delivery attempt (doubling per attempt); default 5.
    pub retry_initial_secs: u64,
    /// Longest backoff between periodic delivery attempts; default 600.
    pub retry_max_secs: u64,
}

impl Default for ImConfig {
    fn default() -> ImConfig {
        ImConfig {
            enabled: true,
            max_age_days: 7,
            max_per_user: 1000,
            retry_initial_secs: 5,
            retry_max_secs: 600,
        }
    }
}

impl ImConfig {
    /// Checks ranges; the error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_age_days == 0 {
            return Err("im.max_age_days must be at least 1".to_owned());
        }
        if self.max_per_user == 0 {
            return Err("im.max_per_user must be at least 1".to_owned());
        }
        if self.retry_initial_secs == 0 || self.retry_max_secs < self.retry_initial_secs {
            return Err(
                "im: retry_initial_secs must be at least 1 and at most retry_max_secs".to_owned(),
            );
        }
        Ok(())
    }

    /// The backoff before the next periodic attempt after `attempts` attempts (at least one).
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let secs = self
            .retry_initial_secs
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_secs);
        Duration::from_secs(secs)
    }

    fn max_age_ms(&self) -> i64 {
        i64::from(self.max_age_days) * 86_400_000
    }
}

/// How one delivery attempt of a stored message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// A device answered 2xx.
    Delivered,
    /// Every device refused it with a non-transient status (the first one given).
    Refused(u16),
    /// No device took it this time; try again later.
    Failed,
}

/// The store-and-forward service (one per lab server).
pub struct Im {
    config: ImConfig,
    endpoint: Endpoint,
    location: Location,
    locals: Arc<LocalDomains>,
    store: Store,
    proxy: Weak<Proxy>,
    /// AoRs with stored messages → a generation bumped on every insert.
    pending: Mutex<HashMap<String, u64>>,
    /// AoRs with a running delivery worker → whether it was kicked again meanwhile.
    active: Mutex<HashMap<String, bool>>,
    stopped: AtomicBool,
}

impl Im {
    /// Starts the service: reads which AoRs have stored messages and spawns the periodic
    /// delivery and expiry task (it ends on [`Im::stop`] or when the service is dropped).
    pub async fn start(
        config: ImConfig,
        endpoint: Endpoint,
        location: Location,
        locals: Arc<LocalDomains>,
        store: Store,
        proxy: &Arc<Proxy>,
    ) -> Arc<Im> {
        let im = Arc::new(Im {
            config,
            endpoint,
            location,
            locals,
            store,
            proxy: Arc::downgrade(proxy),
            pending: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
        });
        if im.config.enabled {
            im.sweep().await;
            tokio::spawn(ticker(Arc::downgrade(&im)));
        }
        im
    }

    /// Stops the periodic task (within one tick) and any further delivery (attempts in flight finish).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when `aor` has stored messages (as far as this process knows).
    pub fn has_stored(&self, aor: &str) -> bool {
        self.pending().contains_key(aor)
    }

    /// The recipient AoR of a MESSAGE this service may store: an out-of-dialog MESSAGE with no
    /// Route left, addressed to a user of a local domain (not to a contact on this host).
    pub fn storable_aor(&self, request: &Request) -> Option<String> {
        if !self.config.enabled || request.method != Method::Message {
            return None;
        }
        let in_dialog = request
            .headers
            .to()
            .map(|to| to.tag().is_some_and(|t| !t.is_empty()))
            .unwrap_or(true);
        let routed = request
            .headers
            .routes()
            .map(|r| !r.is_empty())
            .unwrap_or(true);
        if in_dialog || routed || !self.is_our_domain(&request.uri) {
            return None;
        }
        self.locals.canonical_aor(&request.uri)
    }

    fn is_our_domain(&self, uri: &Uri) -> bool {
        if !self.locals.is_local_host(&uri.host) {
            return false;
        }
        match uri.port {
            None => true,
            Some(p) => self
                .endpoint
                .local_addrs()
                .iter()
                .any(|(_, a)| a.port() == p),
        }
    }

    /// Hook before forwarding: a MESSAGE for a user with stored messages is queued behind them
    /// (answered here); `None` to forward as usual.
    pub async fn intercept(self: &Arc<Self>, request: &Request) -> Option<Response> {
        let aor = self.storable_aor(request)?;
        if !self.has_stored(&aor) {
            return None;
        }
        Some(self.accept(request, aor).await)
    }

    /// Hook when a MESSAGE could not be delivered: when every final status in `statuses` says
    /// "unreachable" (408, 480, 503), the message is stored and the answer is the 202 (or the
    /// quota/storage error); `None` to relay the usual response.
    pub async fn offline(
        self: &Arc<Self>,
        request: &Request,
        statuses: &[u16],
    ) -> Option<Response> {
        let aor = self.storable_aor(request)?;
        if statuses.is_empty() || !statuses.iter().all(|s| matches!(s, 408 | 480 | 503)) {
            return None;
        }
        Some(self.accept(request, aor).await)
    }

    /// Stores `request` for `aor` and returns the answer for the sender: `202 Accepted` once the
    /// message is committed (or was already stored), `486` when the recipient's quota is full,
    /// `500` when the store failed.
    pub async fn accept(self: &Arc<Self>, request: &Request, aor: String) -> Response {
        let from_tag = request
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        let call_id = request.headers.call_id().unwrap_or_default();
        let cseq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let message = NewStoredMessage {
            stored_id: format!("{:032x}", rand::random::<u128>()),
            submit_key: format!("{aor} {from_tag} {call_id} {cseq}"),
            aor: aor.clone(),
            from_header: request
                .headers
                .get_str(&HeaderName::From)
                .unwrap_or_default()
                .to_owned(),
            to_header: request
                .headers
                .get_str(&HeaderName::To)
                .unwrap_or_default()
                .to_owned(),
            content_type: request
                .headers
                .content_type()
                .unwrap_or("text/plain")
                .to_owned(),
            body: request.body.to_vec(),
            submitted_at: unix_now_ms(),
        };
        match self
            .store
            .insert_stored_message(&message, self.config.max_per_user)
            .await
        {
            Ok(InsertOutcome::Stored) => {
                *self.pending().entry(aor.clone()).or_insert(0) += 1;
                tracing::debug!(%aor, stored_id = %message.stored_id, "MESSAGE stored");
                self.kick(&aor, true);
                reply(request, 202, "Accepted")
            }
            Ok(InsertOutcome::Duplicate) => reply(request, 202, "Accepted"),
            Ok(InsertOutcome::QuotaFull) => {
                tracing::info!(%aor, "stored-message quota full: MESSAGE refused");
                reply(request, 486, "Busy Here (Message Store Full)")
            }
            Err(e) => {
                tracing::warn!(error = %e, %aor, "storing a MESSAGE failed");
                reply(request, 500, "Server Internal Error")
            }
        }
    }

    /// Hook after a REGISTER was answered `status`: a successful registration of a user with stored
    /// messages starts delivery at once (ignoring the backoff: a new registration is a new
    /// chance). Costs nothing for users without stored messages.
    pub fn registered(self: &Arc<Self>, request: &Request, status: u16) {
        if !self.config.enabled || !(200..300).contains(&status) {
            return;
        }
        let Some(aor) = request
            .headers
            .to()
            .ok()
            .and_then(|to| self.locals.canonical_aor(&to.uri))
        else {
            return;
        };
        if self.has_stored(&aor) {
            self.kick(&aor, true);
        }
    }

    /// Makes sure a delivery worker runs for `aor`.
    fn kick(self: &Arc<Self>, aor: &str, force: bool) {
        if self.is_stopped() {
            return;
        }
        {
            let mut active = self.active();
            if let Some(again) = active.get_mut(aor) {
                *again |= force;
                return;
            }
            active.insert(aor.to_owned(), false);
        }
        let this = Arc::clone(self);
        let aor = aor.to_owned();
        tokio::spawn(async move { this.worker(aor, force).await });
    }

    /// Delivers `aor`'s stored messages in order until one fails, none is left or the user has
    /// no binding; then ends (or runs again when kicked meanwhile).
    async fn worker(self: Arc<Self>, aor: String, mut force: bool) {
        loop {
            self.deliver(&aor, force).await;
            let mut active = self.active();
            match active.get_mut(&aor) {
                Some(again) if *again && !self.is_stopped() => {
                    *again = false;
                    force = true;
                }
                _ => {
                    active.remove(&aor);
                    return;
                }
            }
        }
    }

    async fn deliver(&self, aor: &str, mut force: bool) {
        while !self.is_stopped() {
            let generation = self.pending().get(aor).copied();
            let message = match self.store.next_stored_message(aor).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    let mut pending = self.pending();
                    if pending.get(aor).copied() == generation {
                        pending.remove(aor);
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %aor, "reading stored messages failed");
                    return;
                }
            };
            let now = unix_now_ms();
            if message.submitted_at < now - self.config.max_age_ms() {
                tracing::info!(%aor, stored_id = %message.stored_id, "stored MESSAGE expired undelivered");
                if let Err(e) = self.store.delete_stored_message(message.seq).await {
                    tracing::warn!(error = %e, "deleting an expired message failed");
                    return;
                }
                continue;
            }
            if !force && message.next_attempt_at > now {
                return;
            }
            let bindings = self.location.lookup(aor, unix_now());
            if bindings.is_empty() {
                return;
            }
            let attempts = message.attempts.saturating_add(1);
            let next_at = now.saturating_add(
                i64::try_from(self.config.backoff(attempts).as_millis()).unwrap_or(i64::MAX),
            );
            if let Err(e) = self
                .store
                .mark_stored_in_flight(message.seq, now, next_at)
                .await
            {
                tracing::warn!(error = %e, "marking a stored message in flight failed");
                return;
            }
            match self.attempt(&message, attempts, &bindings).await {
                Attempt::Delivered => {
                    if let Err(e) = self.store.delete_stored_message(message.seq).await {
                        // Not deleted: it would be sent again (same Tandem-Stored-Id).
                        tracing::warn!(error = %e, "deleting a delivered message failed");
                        return;
                    }
                    tracing::debug!(%aor, stored_id = %message.stored_id, "stored MESSAGE delivered");
                    force = true;
                }
                Attempt::Refused(status) => {
                    tracing::info!(%aor, stored_id = %message.stored_id, status, "stored MESSAGE refused by every device: dropped");
                    if let Err(e) = self.store.delete_stored_message(message.seq).await {
                        tracing::warn!(error = %e, "deleting a refused message failed");
                        return;
                    }
                }
                Attempt::Failed => {
                    if let Err(e) = self.store.release_stored_message(message.seq).await {
                        tracing::warn!(error = %e, "releasing a stored message failed");
                    }
                    return;
                }
            }
        }
    }

    /// The MESSAGE that delivers `message` to `contact`.
    fn delivery_request(&self, message: &StoredMessage, attempts: i64, contact: Uri) -> Request {
        let mut r = Request::new(Method::Message, contact);
        r.headers.push(HeaderName::MaxForwards, "70");
        r.headers
            .push(HeaderName::From, message.from_header.clone());
        r.headers.push(HeaderName::To, message.to_header.clone());
        r.headers.push(
            HeaderName::CallId,
            format!("{}@{}", message.stored_id, self.locals.domain()),
        );
        let cseq = attempts.clamp(1, i64::from(i32::MAX));
        r.headers.push(HeaderName::CSeq, format!("{cseq} MESSAGE"));
        r.headers.push(
            HeaderName::Date,
            http_date(message.submitted_at.div_euclid(1000)),
        );
        r.headers.push(
            HeaderName::parse(STORED_ID_HEADER),
            message.stored_id.clone(),
        );
        r.headers
            .push(HeaderName::ContentType, message.content_type.clone());
        r.body = Bytes::from(message.body.clone());
        r
    }

    /// Sends `message` to every binding in parallel and waits for the first 2xx or all finals.
    async fn attempt(
        &self,
        message: &StoredMessage,
        attempts: i64,
        bindings: &[Binding],
    ) -> Attempt {
        let Some(proxy) = self.proxy.upgrade() else {
            return Attempt::Failed;
        };
        let mut branches = JoinSet::new();
        for b in bindings {
            let Ok(contact) = Uri::parse(&b.contact) else {
                continue;
            };
            let (target, fallback, _) = proxy.targets_for_uri(&contact, Some(b));
            let request = self.delivery_request(message, attempts, contact);
            branches.spawn(branch(self.endpoint.clone(), request, target, fallback));
        }
        drop(proxy);
        let mut refused = None;
        let mut transient = false;
        while let Some(result) = branches.join_next().await {
            match result {
                Ok(Some(status)) if (200..300).contains(&status) => return Attempt::Delivered,
                Ok(Some(status)) if !is_transient(status) => {
                    refused.get_or_insert(status);
                }
                _ => transient = true,
            }
        }
        match refused {
            Some(status) if !transient => Attempt::Refused(status),
            _ => Attempt::Failed,
        }
    }

    /// Drops expired messages and re-reads which AoRs have stored messages.
    async fn sweep(&self) {
        let cutoff = unix_now_ms().saturating_sub(self.config.max_age_ms());
        match self.store.purge_stored_messages(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired stored messages dropped"),
            Err(e) => tracing::warn!(error = %e, "purging stored messages failed"),
        }
        match self.store.stored_message_aors().await {
            Ok(aors) => {
                let mut pending = self.pending();
                for aor in aors {
                    pending.entry(aor).or_insert(0);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading stored-message recipients failed"),
        }
    }

    /// One periodic pass: a worker for every registered user with stored messages.
    fn tick(self: &Arc<Self>) {
        let now = unix_now();
        let aors: Vec<String> = self.pending().keys().cloned().collect();
        for aor in aors {
            if !self.location.lookup(&aor, now).is_empty() {
                self.kick(&aor, false);
            }
        }
    }
}

/// Statuses after which a stored message is tried again later rather than dropped.
fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 480 | 486 | 491 | 500..=599 | 600) || status < 200
}

/// One branch of a delivery attempt: the final status, or `None` on timeout/transport failure.
async fn branch(
    endpoint: Endpoint,
    request: Request,
    target: Target,
    fallback: Option<Target>,
) -> Option<u16> {
    let mut ctx = match endpoint.request(request.clone(), target).await {
        Ok(ctx) => ctx,
        Err(e) => {
            tracing::debug!(error = %e, "stored-message branch could not be sent");
            endpoint.request(request, fallback?).await.ok()?
        }
    };
    loop {
        match ctx.next().await? {
            TxOutcome::Final(r) => return Some(r.status),
            TxOutcome::Provisional(_) => continue,
            _ => return None,
        }
    }
}

/// The periodic task: delivery passes every [`TICK`], expiry sweeps every [`SWEEP`].
async fn ticker(im: Weak<Im>) {
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        let Some(this) = im.upgrade() else { return };
        if this.is_stopped() {
            return;
        }
        if last_sweep.elapsed() >= SWEEP {
            last_sweep = tokio::time::Instant::now();
            this.sweep().await;
        }
        this.tick();
        drop(this);
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = ImConfig::default();
        assert_eq!(c.backoff(1), Duration::from_secs(5));
        assert_eq!(c.backoff(2), Duration::from_secs(10));
        assert_eq!(c.backoff(4), Duration::from_secs(40));
        assert_eq!(c.backoff(10), Duration::from_secs(600));
        assert_eq!(c.backoff(i64::MAX), Duration::from_secs(600));
        assert_eq!(c.backoff(0), Duration::from_secs(5));
    }

    #[test]
    fn config_ranges() {
        assert!(ImConfig::default().validate().is_ok());
        let mut c = ImConfig {
            max_per_user: 0,
            ..ImConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("max_per_user"));
        c.max_per_user = 1;
        c.retry_max_secs = 1;
        assert!(c.validate().is_err());
        c.max_age_days = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 480, 486, 500, 503, 504, 600] {
            assert!(is_transient(s), "{s}");
        }
        for s in [403, 404, 415, 488, 603, 302] {
            assert!(!is_transient(s), "{s}");
        }
    }
}
