//! Wiring: endpoint, registrar, proxy and store into one running lab server.
//!
//! [`LabServer::start`] binds a [`tandem_net::Endpoint`] on the configured listeners, loads the
//! location service from the store and runs the dispatcher: REGISTER → registrar, OPTIONS for the
//! server itself → 200, everything else → proxy, after the checks every element makes first
//! (Max-Forwards 483, loops 482, unsupported Require/Proxy-Require 420). [`run`] is the `serve`
//! command: it prints the `ready …` line and serves until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tandem_net::{Endpoint, EndpointConfig, IncomingEvent, NetError};
use tandem_proto::msg::{HeaderName, Method, Request};
use tandem_proto::transaction::{TxConfig, TxId};
use tandem_proto::{Flow, Transport};
use tokio::task::JoinHandle;

use crate::authn::{Authenticator, AuthnError, AuthnSettings, nonce_secret};
use crate::ca::{CaError, LabCa};
use crate::config::LabConfig;
use crate::location::{Location, LocationError, LocationTasks, unix_now};
use crate::proxy::{Proxy, ProxySettings};
use crate::registrar::{LocalDomains, Registrar, RegistrarSettings, reply};
use crate::store::Store;

/// The methods the lab server handles or proxies, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK, PUBLISH";

/// Errors starting or stopping the lab server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding the listeners or running the endpoint failed.
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// The TLS configuration could not be built from the lab CA.
    #[error("TLS: {0}")]
    Ca(#[from] CaError),
    /// Loading or flushing registrations failed.
    #[error("location service: {0}")]
    Location(#[from] LocationError),
    /// The authentication settings are invalid.
    #[error("authentication: {0}")]
    Authn(#[from] AuthnError),
    /// The presence agent or XCAP server could not start.
    #[error("presence: {0}")]
    Presence(#[from] crate::presence::PresenceError),
    /// The MSRP relay could not start.
    #[error("{0}")]
    Msrp(#[from] crate::msrp_relay::MsrpRelayError),
    /// The STUN/TURN server could not start.
    #[error("{0}")]
    Turn(#[from] crate::turn::TurnError),
    /// The media server could not start.
    #[error("{0}")]
    MediaServer(#[from] crate::mediasrv::MediaServerError),
    /// The click-to-call API could not start.
    #[error("{0}")]
    Api(#[from] crate::mediasrv::api::ApiError),
}

/// Everything the dispatcher needs.
struct Core {
    endpoint: Endpoint,
    registrar: Registrar,
    proxy: Arc<Proxy>,
    locals: Arc<LocalDomains>,
    im: Arc<crate::im::Im>,
    presence: Arc<crate::presence::Presence>,
}

/// A running lab server (in-process handle; used by `serve` and by tests).
pub struct LabServer {
    endpoint: Endpoint,
    location: Location,
    location_tasks: Option<LocationTasks>,
    dispatcher: Option<JoinHandle<()>>,
    proxy: Arc<Proxy>,
    store: Store,
    im: Arc<crate::im::Im>,
    presence: Arc<crate::presence::Presence>,
    msrp: Option<crate::msrp_relay::MsrpRelay>,
    turn: Option<crate::turn::TurnServer>,
    mediasrv: Option<crate::mediasrv::MediaServer>,
    api: Option<crate::mediasrv::api::ApiServer>,
    relay: Option<crate::media_relay::MediaRelay>,
}

impl LabServer {
    /// Binds the listeners of `config` and starts serving.
    pub async fn start(
        config: LabConfig,
        store: Store,
        ca: LabCa,
    ) -> Result<LabServer, ServerError> {
        let tls_server = if config.listen.tls.is_empty() {
            None
        } else {
            Some(ca.server_config()?)
        };
        let tls_client = ca.client_config().ok();
        let endpoint_config = EndpointConfig {
            udp: config.listen.udp.clone(),
            tcp: config.listen.tcp.clone(),
            tls: config.listen.tls.clone(),
            tls_server,
            tls_client,
            public_host: config.public_host.clone(),
            tx: TxConfig {
                max_transactions: config.limits.max_transactions,
                seed: rand::random(),
                user_agent: Some(format!("Tandem-Lab/{}", env!("CARGO_PKG_VERSION"))),
                ..TxConfig::default()
            },
            ..EndpointConfig::default()
        };

        let location = Location::load(store.clone(), unix_now()).await?;
        let authn = Arc::new(Authenticator::new(
            AuthnSettings {
                realm: config.realm().to_string(),
                domain: config.domain.clone(),
                algorithms: config.auth.algorithms.clone(),
                nonce_lifetime: Duration::from_secs(config.auth.nonce_lifetime_secs.max(1)),
                trusted: config.auth.trusted.clone(),
            },
            nonce_secret(&store).await,
            store.clone(),
        )?);

        let (endpoint, mut incoming) = Endpoint::bind(endpoint_config).await?;
        let listeners: Vec<SocketAddr> = endpoint.local_addrs().iter().map(|(_, a)| *a).collect();
        let locals = Arc::new(LocalDomains::new(
            &config.domain,
            &config.local_domains(),
            &listeners,
        ));
        let registrar = Registrar::new(
            RegistrarSettings {
                min_expires: config.registrar.min_expires,
                max_expires: config.registrar.max_expires,
                default_expires: config.registrar.default_expires,
                max_contacts: config.registrar.max_contacts,
                third_party: config.registrar.third_party.clone(),
                flow_timer: config.registrar.flow_timer,
            },
            location.clone(),
            Arc::clone(&authn),
            Arc::clone(&locals),
        );
        let proxy = Arc::new(Proxy::new(
            ProxySettings {
                invite_timeout: Duration::from_secs(config.proxy.invite_timeout_secs.max(1)),
                record_route: config.proxy.record_route,
                max_forks: config.proxy.max_forks.max(1),
                max_calls: config.limits.max_transactions.max(1),
            },
            endpoint.clone(),
            location.clone(),
            Arc::clone(&authn),
            Arc::clone(&locals),
            store.clone(),
        ));
        let relay = crate::media_relay::MediaRelay::start(&config.relay, &listeners);
        if let Some(r) = &relay {
            proxy.set_media_relay(r.clone());
        }
        let presence = Arc::new(
            crate::presence::Presence::start(
                &config,
                &store,
                &ca,
                &endpoint,
                Arc::clone(&locals),
                Arc::clone(&authn),
            )
            .await?,
        );
        let (im_endpoint, im_locals) = (endpoint.clone(), Arc::clone(&locals));
        let im = crate::im::Im::start(
            config.im.clone(),
            im_endpoint,
            location.clone(),
            im_locals,
            store.clone(),
            &proxy,
        )
        .await;
        proxy.set_im(Arc::clone(&im));
        let msrp =
            crate::msrp_relay::MsrpRelay::start(&config, &store, &ca, Arc::clone(&authn)).await?;
        let turn = crate::turn::TurnServer::start(&config, &store, &ca, Arc::clone(&authn)).await?;
        let mediasrv = crate::mediasrv::MediaServer::start(crate::mediasrv::MediaServerDeps {
            config: &config,
            store: &store,
            ca: &ca,
            authn: Arc::clone(&authn),
            proxy: &proxy,
            location: location.clone(),
            locals: Arc::clone(&locals),
        })
        .await?;
        let api = match &mediasrv {
            Some(m) => {
                crate::mediasrv::api::ApiServer::start(Arc::clone(m.ctx()), ca.server_config()?)
                    .await?
            }
            None => None,
        };
        if let (Some(a), Some(t)) = (&api, &turn) {
            a.set_turn_servers(t.ready_fields());
        }
        let location_tasks = location.spawn_tasks();
        let core = Arc::new(Core {
            endpoint: endpoint.clone(),
            registrar,
            proxy: Arc::clone(&proxy),
            locals,
            im: Arc::clone(&im),
            presence: Arc::clone(&presence),
        });
        let dispatcher = tokio::spawn(async move {
            while let Some(event) = incoming.next().await {
                core.dispatch(event);
            }
        });
        Ok(LabServer {
            endpoint,
            location,
            location_tasks: Some(location_tasks),
            dispatcher: Some(dispatcher),
            proxy,
            store,
            im,
            presence,
            msrp,
            turn,
            mediasrv,
            api,
            relay,
        })
    }

    /// The address of the first listener of `transport`, if any.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.endpoint.local_addr(transport)
    }

    /// Every listener address with its transport.
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.endpoint.local_addrs()
    }

    /// The location service (registered bindings, their flows and NAT state).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The `ready udp=IP:PORT tcp=IP:PORT tls=IP:PORT xcap=IP:PORT` line (one key per listener).
    pub fn ready_line(&self) -> String {
        let mut line = String::from("ready");
        for transport in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            for (t, addr) in self.endpoint.local_addrs() {
                if t == transport {
                    line.push_str(&format!(" {}={}", transport.uri_param(), addr));
                }
            }
        }
        if let Some(addr) = self.presence.xcap_addr() {
            line.push_str(&format!(" xcap={addr}"));
        }
        let services = [
            self.msrp.as_ref().map(|s| s.ready_fields()),
            self.turn.as_ref().map(|s| s.ready_fields()),
            self.mediasrv.as_ref().map(|s| s.ready_fields()),
            self.api.as_ref().map(|s| s.ready_fields()),
        ];
        for (key, addr) in services.into_iter().flatten().flatten() {
            line.push_str(&format!(" {key}={addr}"));
        }
        for (key, value) in self.relay.iter().flat_map(|r| r.ready_fields()) {
            line.push_str(&format!(" {key}={value}"));
        }
        line
    }

    /// The media relay, unless `[relay] mode = "never"`.
    pub fn media_relay(&self) -> Option<&crate::media_relay::MediaRelay> {
        self.relay.as_ref()
    }

    /// The store this server persists to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops serving: the dispatcher stops, pending registrations and CDRs are written to the
    /// store, and the listeners and connections are closed.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(s) = &self.mediasrv {
            // The media server's BYEs go through the proxy: before the dispatcher stops.
            s.hang_up_all().await;
        }
        if let Some(d) = self.dispatcher.take() {
            d.abort();
        }
        self.im.stop();
        let flushed = self.location.close().await;
        if let Some(t) = self.location_tasks.take() {
            t.stop();
        }
        self.proxy.flush_cdrs().await;
        self.presence.shutdown().await;
        if let Some(a) = self.api.take() {
            a.shutdown().await;
        }
        if let Some(s) = &self.mediasrv {
            s.shutdown().await;
        }
        if let Some(s) = &self.msrp {
            s.shutdown().await;
        }
        if let Some(s) = &self.turn {
            s.shutdown().await;
        }
        if let Some(r) = &self.relay {
            r.shutdown();
        }
        self.endpoint.shutdown().await;
        flushed?;
        Ok(())
    }
}

impl Drop for LabServer {
    fn drop(&mut self) {
        if let Some(d) = self.dispatcher.take() {
            d.abort();
        }
        self.im.stop();
        if let Some(t) = self.location_tasks.take() {
            t.stop();
        }
    }
}

impl Core {
    fn dispatch(self: &Arc<Self>, event: IncomingEvent) {
        match event {
            IncomingEvent::Request { tx, request, flow } => self.on_request(tx, request, flow),
            IncomingEvent::Ack { request, flow } => {
                let proxy = Arc::clone(&self.proxy);
                tokio::spawn(async move { proxy.handle_ack(request, flow).await });
            }
            IncomingEvent::Cancel {
                tx,
                invite_tx,
                request,
                ..
            } => self.proxy.handle_cancel(tx, invite_tx, &request),
            IncomingEvent::StrayResponse { response, .. } => {
                self.proxy.handle_stray_response(response)
            }
            IncomingEvent::Timeout { tx } => {
                tracing::debug!(?tx, "no ACK for a final response");
            }
            _ => {}
        }
    }

    /// True for an OPTIONS addressed to the server itself (no user part, one of our hosts).
    fn is_options_for_us(&self, request: &Request) -> bool {
        request.method == Method::Options
            && request.uri.user.is_none()
            && self.locals.is_local_host(&request.uri.host)
    }

    fn on_request(self: &Arc<Self>, tx: TxId, request: Request, flow: Flow) {
        let for_us = request.method == Method::Register || self.is_options_for_us(&request);
        // RFC 3261 §16.3 step 3 (an OPTIONS for us may still be answered).
        if request.headers.max_forwards().ok().flatten() == Some(0)
            && !self.is_options_for_us(&request)
        {
            self.endpoint
                .respond(tx, reply(&request, 483, "Too Many Hops"));
            return;
        }
        // §16.3 step 4.
        if !for_us && self.proxy.is_loop(&request) {
            self.endpoint
                .respond(tx, reply(&request, 482, "Loop Detected"));
            return;
        }
        // §16.3 step 5 (Proxy-Require), §8.2.2.3 (Require for requests we answer ourselves).
        let mut unsupported = request.headers.values(&HeaderName::ProxyRequire);
        if for_us {
            unsupported.extend(request.headers.values(&HeaderName::Require));
        }
        unsupported.retain(|t| !t.trim().is_empty());
        if !unsupported.is_empty() {
            let mut r = reply(&request, 420, "Bad Extension");
            r.headers
                .push(HeaderName::Unsupported, unsupported.join(", "));
            self.endpoint.respond(tx, r);
            return;
        }
        if request.method == Method::Register {
            // Usually answered at once (HA1 cached); a task only when the store must be asked.
            if let Some(response) = self.registrar.handle_now(&request, flow) {
                let status = response.status;
                self.endpoint.respond(tx, response);
                self.im.registered(&request, status);
                return;
            }
            let core = Arc::clone(self);
            tokio::spawn(async move {
                let response = core.registrar.handle(&request, flow).await;
                let status = response.status;
                core.endpoint.respond(tx, response);
                core.im.registered(&request, status);
            });
            return;
        }
        if self.is_options_for_us(&request) {
            let mut r = reply(&request, 200, "OK");
            r.headers.push(HeaderName::Allow, ALLOW);
            r.headers.push(HeaderName::Accept, "application/sdp");
            r.headers.push(HeaderName::Supported, "");
            self.endpoint.respond(tx, r);
            return;
        }
        if self.presence.handles(&request) {
            self.presence.dispatch(tx, request, flow);
            return;
        }
        self.proxy.dispatch(tx, request, flow);
    }
}

/// Runs the lab server until SIGINT or SIGTERM: prints the `ready …` line on stdout once
/// listening, then shuts down cleanly (registrations and CDRs flushed to the store).
pub async fn run(config: LabConfig, store: Store, ca: LabCa) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM right after the ready line must still shut down cleanly.
    let signals = Signals::install()?;
    let server = LabServer::start(config, store, ca).await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.ready_line())?;
        out.flush()?;
    }
    signals.wait().await;
    tracing::info!("shutting down");
    server.shutdown().await?;
    Ok(())
}

/// SIGINT/SIGTERM (Ctrl-C elsewhere), installed before the server announces itself.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
