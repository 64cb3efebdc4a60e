//! Set-up shared by the client-core tests against an in-process `tandem-lab` on loopback: the
//! lab with alice and bob, a registered phone per account that calls and answers, and waiting
//! for call events.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tandem_client_core::nat::turn::TurnConfig;
use tandem_client_core::types::{DeviceSpec, DnsConfig, Transport};
use tandem_client_core::{
    Account, AnswerOptions, Call, CallEvent, CallOptions, MediaOptions, Registration, UaConfig,
    UaEvent, UaEvents, UserAgent, VideoNotice, parse_uri,
};
use tandem_labserver::ca::LabCa;
use tandem_labserver::config::LabConfig;
use tandem_labserver::server::LabServer;
use tandem_labserver::store::Store;
use tokio::time::timeout;

#[path = "../../../labserver/tests/lab_fixture/mod.rs"]
mod lab_fixture;

use lab_fixture::{DOMAIN, loopback_config};

/// An in-process lab (SIP on loopback UDP) with the users alice and bob; stopped on drop.
pub struct Lab {
    server: Option<LabServer>,
    /// The lab's SIP UDP address.
    pub udp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Lab {
    /// Starts the lab with the loopback configuration as `configure` leaves it.
    pub async fn start_with(configure: impl FnOnce(&mut LabConfig)) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let mut config = loopback_config(dir.path(), false);
        configure(&mut config);
        let store = Store::open_in(dir.path()).await.unwrap();
        for u in ["alice", "bob"] {
            store.add_user(u, DOMAIN, &format!("{u}pw")).await.unwrap();
        }
        let ca = LabCa::load_or_create(dir.path(), &[DOMAIN.to_string()]).unwrap();
        let server = LabServer::start(config, store, ca).await.unwrap();
        let udp = server.local_addr(Transport::Udp).unwrap();
        Lab {
            server: Some(server),
            udp,
            _dir: dir,
        }
    }

    /// The account of `user` (password `<user>pw`) with the lab as outbound proxy.
    pub fn account(&self, user: &str) -> Account {
        let mut a = Account::new(user, DOMAIN);
        a.password = Some(format!("{user}pw"));
        a.proxy = Some(parse_uri(&format!("sip:{}", self.udp)).unwrap());
        a
    }

    /// The address of the lab's TURN server, from its ready line.
    pub fn turn(&self) -> SocketAddr {
        self.server
            .as_ref()
            .unwrap()
            .ready_line()
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("turn="))
            .expect("no turn= in the ready line")
            .parse()
            .unwrap()
    }

    /// TURN credentials of `user` on the lab's TURN server.
    pub fn turn_config(&self, user: &str) -> TurnConfig {
        TurnConfig::new(&format!("turn:{}", self.turn()), user, format!("{user}pw")).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Dropping the server stops its tasks with the test's runtime.
        self.server.take();
    }
}

/// A user agent on loopback UDP, registered with one account.
pub struct Phone {
    /// The user agent.
    pub ua: UserAgent,
    /// Its events.
    pub events: UaEvents,
    /// The account it registered.
    pub account: Account,
    _registration: Registration,
}

impl Phone {
    /// Starts a user agent and registers `account`.
    pub async fn new(account: Account) -> Phone {
        let config = UaConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            transport: Transport::Udp,
            dns: DnsConfig::Disabled,
            ..UaConfig::default()
        };
        let (ua, events) = UserAgent::new(config).await.unwrap();
        let registration = ua.register(&account).await.unwrap();
        Phone {
            ua,
            events,
            account,
            _registration: registration,
        }
    }

    /// Calls `user` of the lab's domain with `media`.
    pub async fn call(&self, user: &str, media: MediaOptions) -> Call {
        let target = parse_uri(&format!("sip:{user}@{DOMAIN}")).unwrap();
        let options = CallOptions {
            media,
            ..CallOptions::default()
        };
        self.ua.call(&self.account, target, options).await.unwrap()
    }

    /// Waits (up to 10 s) for an incoming call and answers it with `media`.
    pub async fn answer(&mut self, media: MediaOptions) -> Call {
        let incoming = loop {
            match timeout(Duration::from_secs(10), self.events.next())
                .await
                .expect("no incoming call")
                .expect("UA events ended")
            {
                UaEvent::IncomingCall(c) => break c,
                _ => continue,
            }
        };
        incoming
            .accept_with(AnswerOptions {
                account: Some(self.account.clone()),
                media,
            })
            .await
            .unwrap()
    }
}

/// Waits (up to `within`) for the first event matching `pred`, returning it and what came
/// before.
pub async fn wait_for(
    within: Duration,
    call: &mut Call,
    pred: impl Fn(&CallEvent) -> bool,
) -> (CallEvent, Vec<CallEvent>) {
    let mut seen = Vec::new();
    loop {
        let ev = timeout(within, call.next_event())
            .await
            .unwrap_or_else(|_| panic!("timed out; events so far: {seen:?}"))
            .unwrap_or_else(|| panic!("call events ended; events so far: {seen:?}"));
        if pred(&ev) {
            return (ev, seen);
        }
        seen.push(ev);
    }
}

/// Audio-only media options: a 440 Hz tone, quality reported every 500 ms.
pub fn audio() -> MediaOptions {
    MediaOptions {
        capture: DeviceSpec::Tone(440.0),
        report_interval: Duration::from_millis(500),
        ..MediaOptions::default()
    }
}

/// Waits up to 20 s for the first video notice on `call` that `pred` accepts.
pub async fn video_notice(call: &mut Call, pred: impl Fn(&VideoNotice) -> bool) -> VideoNotice {
    match wait_for(
        Duration::from_secs(20),
        call,
        |e| matches!(e, CallEvent::Video(n) if pred(n)),
    )
    .await
    .0
    {
        CallEvent::Video(n) => n,
        _ => unreachable!(),
    }
}

/// Waits for the first decoded video frame on `call`; its size.
pub async fn first_frame(call: &mut Call) -> (u32, u32) {
    match video_notice(call, |n| matches!(n, VideoNotice::FirstFrame { .. })).await {
        VideoNotice::FirstFrame { width, height } => (width, height),
        _ => unreachable!(),
    }
}

/// Hangs up `a`, waits for both ends (their media stopped, recordings finished).
pub async fn hang_up(a: &mut Call, b: &mut Call) {
    a.hangup();
    for c in [a, b] {
        wait_for(Duration::from_secs(20), c, |e| {
            matches!(e, CallEvent::Ended { .. })
        })
        .await;
    }
}
