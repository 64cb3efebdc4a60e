//! Lab media relay (what rtpengine does for Kamailio): anchors media of NATed non-ICE peers, IPv4 <-> IPv6.
//!
//! The proxy decides per call ([`should_anchor`]) on the initial INVITE's offer; an anchored
//! call gets a [`MediaRelay`] session keyed by Call-ID and the caller's tag. Every SDP of the
//! dialog then passes [`MediaRelay::rewrite`]: the writer's addresses are remembered (NAT
//! corrected, then latched from the first packet), and the reader sees the relay's sockets
//! facing it, in its own IP family, with the ICE attributes stripped. Forks get one set of
//! callee-side sockets per branch; the first 2xx releases the others. Sessions end on BYE,
//! on a failure final response or CANCEL, and after `timeout_secs` without packets.

mod port;
pub mod sdp;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tandem_proto::sdp::SessionDescription;
use tokio::task::JoinHandle;

pub use self::port::Family;
use self::port::{Advertised, PortPool};
pub use self::session::RELATCH_SILENCE;
use self::session::{CallerSide, Session};

/// How often idle sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// An unanswered call's session lives at least this long without packets (ringing is silent).
const UNANSWERED_IDLE: Duration = Duration::from_secs(300);

/// When the proxy anchors a call's media on the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RelayMode {
    /// When a side is NATed or the families differ, unless both ends do ICE (the default).
    #[default]
    Auto,
    /// Every call with an SDP offer.
    Always,
    /// Never (the relay is not started).
    Never,
}

/// The `[relay]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// `auto`, `always` or `never`.
    pub mode: RelayMode,
    /// The IPv4 address put in SDP; default the IPv4 SIP listener's (with an unspecified
    /// listener, the address of the interface that routes to the peer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// The IPv6 address put in SDP; default as for `ipv4`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Lowest relay port; 0 (with `port_max` 0) = ports chosen by the OS (the default).
    pub port_min: u16,
    /// Highest relay port.
    pub port_max: u16,
    /// Most calls anchored at once (then calls go unanchored and are counted); default 1000.
    pub max_sessions: usize,
    /// A call with no packet in either direction for this long is torn down; default 60.
    pub timeout_secs: u64,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            mode: RelayMode::Auto,
            ipv4: None,
            ipv6: None,
            port_min: 0,
            port_max: 0,
            max_sessions: 1000,
            timeout_secs: 60,
        }
    }
}

impl RelayConfig {
    /// Checks the port range and limits.
    pub fn validate(&self) -> Result<(), String> {
        if (self.port_min == 0) != (self.port_max == 0) {
            return Err("relay.port_min and relay.port_max must both be 0 or both be set".into());
        }
        if self.port_min != 0 && u32::from(self.port_max) < u32::from(self.port_min) + 3 {
            return Err(format!(
                "relay port range {}-{} must hold at least two port pairs",
                self.port_min, self.port_max
            ));
        }
        if self.max_sessions == 0 {
            return Err("relay.max_sessions must be at least 1".into());
        }
        if self.timeout_secs == 0 {
            return Err("relay.timeout_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// Errors of the media relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// No free port pair in the configured range.
    #[error("no free relay ports")]
    NoPorts,
    /// A relay socket could not be bound.
    #[error("relay socket: {0}")]
    Bind(#[source] std::io::Error),
    /// `max_sessions` calls are anchored already.
    #[error("relay full ({0} sessions)")]
    Full(usize),
    /// The session or branch does not exist (ended, or never anchored).
    #[error("no such relay session")]
    NoSession,
    /// The relay has no address in the family a side needs.
    #[error("the relay has no {0:?} address")]
    NoFamily(Family),
}

/// Which party of an anchored call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// The party that sent the initial INVITE.
    Caller,
    /// The party that answered it (one of the branches).
    Callee,
}

impl Side {
    /// The other party.
    pub fn other(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }
}

/// Identifies an anchored call: its Call-ID and the caller's From tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// The caller's tag.
    pub caller_tag: String,
}

/// Counters of the relay (monotonic, except `sessions`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls anchored since start.
    pub sessions_created: AtomicU64,
    /// Calls that needed the relay but were not anchored (full, no ports, no family).
    pub sessions_refused: AtomicU64,
    /// Sessions ended by the inactivity timeout.
    pub sessions_timed_out: AtomicU64,
    /// Packets forwarded.
    pub forwarded: AtomicU64,
    /// Payload bytes forwarded.
    pub forwarded_bytes: AtomicU64,
    /// Packets dropped because they came from a source other than the latched one.
    pub dropped_foreign: AtomicU64,
    /// Packets dropped because there was nowhere to send them (no answer yet, inactive fork).
    pub dropped_no_peer: AtomicU64,
    /// Re-latches onto a new source after the old one was silent (NAT rebinding).
    pub relatches: AtomicU64,
    /// Sends that failed.
    pub send_errors: AtomicU64,
}

/// A copy of the relay's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Sessions anchored now.
    pub sessions: u64,
    /// Calls anchored since start.
    pub sessions_created: u64,
    /// Calls that needed the relay but were not anchored.
    pub sessions_refused: u64,
    /// Sessions ended by the inactivity timeout.
    pub sessions_timed_out: u64,
    /// Packets forwarded.
    pub forwarded: u64,
    /// Payload bytes forwarded.
    pub forwarded_bytes: u64,
    /// Packets from a source other than the latched one, dropped.
    pub dropped_foreign: u64,
    /// Packets with nowhere to go, dropped.
    pub dropped_no_peer: u64,
    /// Re-latches after silence.
    pub relatches: u64,
    /// Failed sends.
    pub send_errors: u64,
    /// Relay sockets open now.
    pub sockets: u64,
}

/// What the proxy knows about one party when deciding whether to anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartyInfo {
    /// The party is behind a NAT.
    pub nated: bool,
    /// The IP family its signalling uses, when known.
    pub family: Option<Family>,
    /// It registered with `+sip.ice` (callees only).
    pub ice: bool,
}

/// The decision rule: anchor when (the caller is NATed, or a callee is, or the families
/// differ) and not (the offer has ICE and every callee does ICE). `always` anchors every
/// offer, `never` none.
pub fn should_anchor(
    mode: RelayMode,
    caller: PartyInfo,
    callees: &[PartyInfo],
    offer_has_ice: bool,
) -> bool {
    match mode {
        RelayMode::Never => false,
        RelayMode::Always => true,
        RelayMode::Auto => {
            let families_differ = callees.iter().any(|c| match (caller.family, c.family) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            });
            let needed = caller.nated || callees.iter().any(|c| c.nated) || families_differ;
            let all_ice = offer_has_ice && !callees.is_empty() && callees.iter().all(|c| c.ice);
            needed && !all_ice
        }
    }
}

/// True when a caller is NATed: its request's source differs from the top Via sent-by or the
/// Contact host (when those are IP literals), or its SDP's connection address is a private
/// one other than the source.
pub fn caller_is_nated(
    source: IpAddr,
    via_host: Option<IpAddr>,
    contact_host: Option<IpAddr>,
    sdp: Option<&SessionDescription>,
) -> bool {
    let differs = |ip: Option<IpAddr>| ip.is_some_and(|ip| ip != source);
    if differs(via_host) || differs(contact_host) {
        return true;
    }
    let Some(sdp) = sdp else { return false };
    (0..sdp.media.len())
        .filter_map(|i| sdp.media_connection(i).and_then(|c| c.ip()))
        .chain(sdp.connection.as_ref().and_then(|c| c.ip()))
        .any(|ip| !ip.is_unspecified() && ip != source && sdp::is_private(ip))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    config: RelayConfig,
    v4: Option<Advertised>,
    v6: Option<Advertised>,
    ports: PortPool,
    sessions: Mutex<HashMap<DialogId, Session>>,
    stats: Arc<Stats>,
}

/// The media relay: sessions, sockets and counters (cheap to clone).
#[derive(Clone)]
pub struct MediaRelay {
    inner: Arc<Inner>,
    _sweeper: Arc<SweeperGuard>,
}

struct SweeperGuard(JoinHandle<()>);

impl Drop for SweeperGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for MediaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRelay")
            .field("mode", &self.inner.config.mode)
            .field("v4", &self.inner.v4)
            .field("v6", &self.inner.v6)
            .finish()
    }
}

impl MediaRelay {
    /// Starts the relay for `config` next to the SIP UDP/TCP/TLS `listeners` (their addresses
    /// give the default advertised addresses and the families served); `None` with mode `never`.
    pub fn start(config: &RelayConfig, listeners: &[SocketAddr]) -> Option<MediaRelay> {
        if config.mode == RelayMode::Never {
            return None;
        }
        let pick = |family: Family, fixed: Option<IpAddr>| -> Option<Advertised> {
            if let Some(ip) = fixed {
                return Some(Advertised::Fixed(ip));
            }
            let l = listeners.iter().find(|a| Family::of(a.ip()) == family)?;
            Some(if l.ip().is_unspecified() {
                Advertised::Route(family)
            } else {
                Advertised::Fixed(l.ip())
            })
        };
        let v4 = pick(Family::V4, config.ipv4.map(IpAddr::V4));
        let v6 = pick(Family::V6, config.ipv6.map(IpAddr::V6));
        let inner = Arc::new(Inner {
            config: config.clone(),
            v4,
            v6,
            ports: PortPool::new(config.port_min, config.port_max),
            sessions: Mutex::new(HashMap::new()),
            stats: Arc::new(Stats::default()),
        });
        let weak = Arc::downgrade(&inner);
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.sweep(Instant::now());
            }
        });
        Some(MediaRelay {
            inner,
            _sweeper: Arc::new(SweeperGuard(sweeper)),
        })
    }

    /// The configured mode.
    pub fn mode(&self) -> RelayMode {
        self.inner.config.mode
    }

    /// True when the relay has an address in `family`.
    pub fn serves(&self, family: Family) -> bool {
        self.advertised(family).is_some()
    }

    fn advertised(&self, family: Family) -> Option<Advertised> {
        match family {
            Family::V4 => self.inner.v4,
            Family::V6 => self.inner.v6,
        }
    }

    /// The ready-line field: `relay=IPv4[,IPv6]` (whichever families it serves).
    pub fn ready_fields(&self) -> Vec<(&'static str, String)> {
        let ips: Vec<String> = [self.inner.v4, self.inner.v6]
            .into_iter()
            .flatten()
            .map(|a| a.display_ip().to_string())
            .collect();
        if ips.is_empty() {
            return Vec::new();
        }
        vec![("relay", ips.join(","))]
    }

    /// The counters now.
    pub fn stats(&self) -> RelayStats {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let sessions = lock(&self.inner.sessions);
        RelayStats {
            sessions: sessions.len() as u64,
            sockets: sessions.values().map(|s| s.socket_count() as u64).sum(),
            sessions_created: get(&s.sessions_created),
            sessions_refused: get(&s.sessions_refused),
            sessions_timed_out: get(&s.sessions_timed_out),
            forwarded: get(&s.forwarded),
            forwarded_bytes: get(&s.forwarded_bytes),
            dropped_foreign: get(&s.dropped_foreign),
            dropped_no_peer: get(&s.dropped_no_peer),
            relatches: get(&s.relatches),
            send_errors: get(&s.send_errors),
        }
    }

    /// True when the call `id` is anchored.
    pub fn is_anchored(&self, id: &DialogId) -> bool {
        lock(&self.inner.sessions).contains_key(id)
    }

    /// The anchored call a message of dialog (`call_id`, `from_tag`, `to_tag`) belongs to, and
    /// which side sent it (the From party).
    pub fn find(
        &self,
        call_id: &str,
        from_tag: &str,
        to_tag: Option<&str>,
    ) -> Option<(DialogId, Side)> {
        let sessions = lock(&self.inner.sessions);
        let as_caller = DialogId {
            call_id: call_id.to_owned(),
            caller_tag: from_tag.to_owned(),
        };
        if sessions.contains_key(&as_caller) {
            return Some((as_caller, Side::Caller));
        }
        let as_callee = DialogId {
            call_id: call_id.to_owned(),
            caller_tag: to_tag?.to_owned(),
        };
        sessions
            .contains_key(&as_callee)
            .then_some((as_callee, Side::Callee))
    }

    /// Anchors a new call whose caller signals from `caller_flow` and offers `offer` (the
    /// caller's sockets are in the family of the offer's address). Counted as refused on error.
    pub fn anchor(
        &self,
        id: DialogId,
        caller_flow: IpAddr,
        offer: &SessionDescription,
    ) -> Result<(), RelayError> {
        let result = self.anchor_inner(id, caller_flow, offer);
        if result.is_err() {
            self.inner
                .stats
                .sessions_refused
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn anchor_inner(
        &self,
        id: DialogId,
        caller_flow: IpAddr,
        offer: &SessionDescription,
    ) -> Result<(), RelayError> {
        let sdp_ip = (0..offer.media.len())
            .find_map(|i| offer.media_connection(i).and_then(|c| c.ip()))
            .filter(|ip| !ip.is_unspecified());
        let family = Family::of(sdp_ip.unwrap_or(caller_flow));
        let (advertised, bind_ip) = self.addresses(family, Some(caller_flow))?;
        let mut sessions = lock(&self.inner.sessions);
        if sessions.contains_key(&id) {
            return Ok(());
        }
        if sessions.len() >= self.inner.config.max_sessions {
            return Err(RelayError::Full(sessions.len()));
        }
        let caller = CallerSide {
            advertised,
            bind_ip,
            flow_ip: Some(caller_flow),
        };
        let session = Session::new(caller, Arc::clone(&self.inner.stats));
        tracing::info!(
            call_id = %id.call_id,
            caller = %caller_flow,
            relay = %advertised,
            "media relay: call anchored"
        );
        sessions.insert(id, session);
        self.inner
            .stats
            .sessions_created
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// (advertised, bind) addresses of `family` for a side at `peer`; the other family when
    /// the relay does not serve this one (that side then cannot be reached, but the call is
    /// still anchored for the other).
    fn addresses(
        &self,
        family: Family,
        peer: Option<IpAddr>,
    ) -> Result<(IpAddr, IpAddr), RelayError> {
        let adv = self
            .advertised(family)
            .ok_or(RelayError::NoFamily(family))?;
        let ip = adv.address_for(peer);
        Ok((ip, ip))
    }

    /// Adds a callee branch (one fork of the INVITE) reached from signalling address
    /// `callee_flow` (when known) in `family` (default: the caller's family).
    pub fn add_branch(
        &self,
        id: &DialogId,
        family: Option<Family>,
        callee_flow: Option<IpAddr>,
    ) -> Result<u32, RelayError> {
        let mut sessions = lock(&self.inner.sessions);
        let session = sessions.get_mut(id).ok_or(RelayError::NoSession)?;
        let family = family
            .filter(|f| self.serves(*f))
            .unwrap_or_else(|| Family::of(session.caller_ip()));
        let (advertised, bind_ip) = self.addresses(family, callee_flow)?;
        Ok(session.add_branch(advertised, bind_ip, callee_flow))
    }

    /// Rewrites an SDP written by side `from` (through `branch` when that side is a callee
    /// branch, or toward it when the writer is the caller): the writer's addresses are
    /// remembered, the reader gets the relay's addresses facing it, ICE is stripped.
    pub fn rewrite(
        &self,
        id: &DialogId,
        from: Side,
        branch: u32,
        sdp: &mut SessionDescription,
    ) -> Result<(), RelayError> {
        let mut sessions = lock(&self.inner.sessions);
        let session = sessions.get_mut(id).ok_or(RelayError::NoSession)?;
        let relayed: Vec<bool> = (0..sdp.media.len())
            .map(|i| sdp::is_relayed(sdp, i))
            .collect();
        let flow_ip = session.flow_ip(from, branch);
        let addrs = session.addrs_toward(from.other(), branch, &relayed, &self.inner.ports)?;
        for (i, r) in relayed.iter().enumerate() {
            if *r {
                session.set_targets(from, branch, i, sdp::stream_targets(sdp, i, flow_ip));
            }
        }
        if from == Side::Callee {
            session.activate(branch);
        }
        sdp::rewrite(sdp, &addrs);
        Ok(())
    }

    /// Records the callee's tag of `branch` (from its first response with one).
    pub fn set_callee_tag(&self, id: &DialogId, branch: u32, tag: &str) {
        if let Some(s) = lock(&self.inner.sessions).get_mut(id) {
            s.set_to_tag(branch, tag);
        }
    }

    /// The branch that answered with callee tag `tag`, else the dialog's branch.
    pub fn branch_for(&self, id: &DialogId, tag: Option<&str>) -> Option<u32> {
        let sessions = lock(&self.inner.sessions);
        let s = sessions.get(id)?;
        tag.and_then(|t| s.branch_by_tag(t))
            .or_else(|| s.dialog_branch())
    }

    /// A 2xx to the initial INVITE came from `branch`: the others are released.
    pub fn confirm(&self, id: &DialogId, branch: u32) {
        if let Some(s) = lock(&self.inner.sessions).get_mut(id) {
            s.confirm(branch);
        }
    }

    /// A branch failed (non-2xx final) or its dialog ended: its sockets close.
    pub fn release_branch(&self, id: &DialogId, branch: u32) {
        if let Some(s) = lock(&self.inner.sessions).get_mut(id) {
            s.release_branch(branch);
        }
    }

    /// The call failed (final non-2xx to the caller, CANCEL): ends the session unless a 2xx
    /// already confirmed it.
    pub fn failed(&self, id: &DialogId) {
        let mut sessions = lock(&self.inner.sessions);
        if sessions.get(id).is_some_and(|s| s.confirmed.is_none())
            && let Some(s) = sessions.remove(id)
        {
            log_end(id, &s, "failed");
        }
    }

    /// A BYE for the dialog with callee tag `callee_tag`: the session ends when that is the
    /// call's dialog (a BYE for an extra forked dialog releases only its branch).
    pub fn bye(&self, id: &DialogId, callee_tag: Option<&str>) {
        let mut sessions = lock(&self.inner.sessions);
        let Some(s) = sessions.get_mut(id) else {
            return;
        };
        if let Some(b) = callee_tag.and_then(|t| s.branch_by_tag(t))
            && s.confirmed.is_some_and(|c| c != b)
        {
            s.release_branch(b);
            return;
        }
        if let Some(s) = sessions.remove(id) {
            log_end(id, &s, "bye");
        }
    }

    /// Ends every session.
    pub fn shutdown(&self) {
        for (id, s) in lock(&self.inner.sessions).drain() {
            log_end(&id, &s, "shutdown");
        }
    }
}

/// The line a session leaves in the log when it ends (tests and operators look for it).
fn log_end(id: &DialogId, s: &Session, reason: &str) {
    tracing::info!(
        call_id = %id.call_id,
        reason,
        packets = s.packets(),
        "media relay: session ended"
    );
}

impl Inner {
    /// Ends sessions idle for longer than the timeout.
    fn sweep(&self, now: Instant) {
        let timeout = Duration::from_secs(self.config.timeout_secs.max(1));
        let mut sessions = lock(&self.sessions);
        let before = sessions.len();
        sessions.retain(|id, s| {
            let last = s.last_packet().max(s.last_signal);
            let limit = if s.confirmed.is_some() {
                timeout
            } else {
                timeout.max(UNANSWERED_IDLE)
            };
            let keep = now.saturating_duration_since(last) < limit;
            if !keep {
                log_end(id, s, "timeout");
            }
            keep
        });
        let ended = before - sessions.len();
        if ended > 0 {
            self.stats
                .sessions_timed_out
                .fetch_add(ended as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn party(nated: bool, family: Family, ice: bool) -> PartyInfo {
        PartyInfo {
            nated,
            family: Some(family),
            ice,
        }
    }

    #[test]
    fn decision_rule() {
        let plain = party(false, Family::V4, false);
        let nated = party(true, Family::V4, false);
        let ice = party(false, Family::V4, true);
        let v6 = party(false, Family::V6, false);
        // Nobody NATed, same family: direct.
        assert!(!should_anchor(RelayMode::Auto, plain, &[plain], false));
        // Caller or callee NATed: anchored.
        assert!(should_anchor(RelayMode::Auto, nated, &[plain], false));
        assert!(should_anchor(
            RelayMode::Auto,
            plain,
            &[plain, nated],
            false
        ));
        // Families differ.
        assert!(should_anchor(RelayMode::Auto, v6, &[plain], false));
        // ICE offer and every callee does ICE: not anchored; one callee without: anchored.
        assert!(!should_anchor(RelayMode::Auto, nated, &[ice], true));
        assert!(should_anchor(RelayMode::Auto, nated, &[ice, plain], true));
        // ICE callees but an offer without ICE: anchored.
        assert!(should_anchor(RelayMode::Auto, nated, &[ice], false));
        assert!(should_anchor(RelayMode::Always, plain, &[plain], true));
        assert!(!should_anchor(RelayMode::Never, nated, &[nated], false));
    }

    #[test]
    fn nat_detection_of_the_caller() {
        let src: IpAddr = "203.0.113.9".parse().unwrap();
        let sdp = |c: &str| {
            SessionDescription::parse(&format!(
                "v=0\r\no=- 1 1 IN IP4 {c}\r\ns=-\r\nc=IN IP4 {c}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            ))
            .unwrap()
        };
        assert!(!caller_is_nated(
            src,
            Some(src),
            Some(src),
            Some(&sdp("203.0.113.9"))
        ));
        assert!(caller_is_nated(
            src,
            Some("192.168.0.2".parse().unwrap()),
            None,
            None
        ));
        assert!(caller_is_nated(
            src,
            None,
            Some("10.0.0.2".parse().unwrap()),
            None
        ));
        assert!(caller_is_nated(
            src,
            Some(src),
            Some(src),
            Some(&sdp("192.168.0.2"))
        ));
        // A public SDP address that differs is not a NAT sign (a media gateway elsewhere).
        assert!(!caller_is_nated(
            src,
            None,
            None,
            Some(&sdp("198.51.100.1"))
        ));
        assert!(!caller_is_nated(src, None, None, Some(&sdp("0.0.0.0"))));
    }

    #[test]
    fn config_validation() {
        assert!(RelayConfig::default().validate().is_ok());
        let bad = RelayConfig {
            port_min: 30000,
            ..RelayConfig::default()
        };
        assert!(bad.validate().is_err());
        let tiny = RelayConfig {
            port_min: 30000,
            port_max: 30001,
            ..RelayConfig::default()
        };
        assert!(tiny.validate().is_err());
        let ok = RelayConfig {
            port_min: 30000,
            port_max: 30099,
            ..RelayConfig::default()
        };
        assert!(ok.validate().is_ok());
        let parsed: RelayConfig =
            toml::from_str("mode = \"always\"\nipv4 = \"192.0.2.1\"\nmax_sessions = 5\n").unwrap();
        assert_eq!(parsed.mode, RelayMode::Always);
        assert_eq!(parsed.ipv4, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(toml::from_str::<RelayConfig>("mode = \"sometimes\"\n").is_err());
    }
}
