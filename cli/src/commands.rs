//! The commands that run a user agent: register, call, answer, options.

use std::time::Duration;

use tandem_client_core::types::Uri;
use tandem_client_core::types::simple::imdn::{Disposition, Imdn, Notification};
use tandem_client_core::types::simple::pidf::{Availability, Presence};
use tandem_client_core::{
    Account, AnswerOptions as CoreAnswerOptions, CallOptions, EndReason, EndedBy, IncomingCall,
    OutgoingMessage, ReceivedMessage, RegEvent, RegReason, RegisterOptions, Registration, UaError,
    UaEvent, UaEvents, UserAgent, parse_uri,
};
use tandem_client_core::{PresenceEvent, PresenceSubscription, PublishEvent};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};

use crate::args::Command;
use crate::control::{Control, spawn_stdin_reader};
use crate::driver::{DriveContext, Outcome, drive};
use crate::output::{Event, Exit, emit_failure};
use crate::plan::{self, CallPlan};
use crate::settings::Settings;

/// Runs one command to completion and returns the process exit code.
pub async fn run(settings: Settings, command: Command) -> Exit {
    let Settings { mut account, ua } = settings;
    let plan = match &command {
        Command::Call { media, .. } | Command::Answer { media, .. } => {
            match plan::build(media, &mut account) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("tandem-cli: {e:#}");
                    return Exit::Usage;
                }
            }
        }
        _ => CallPlan::plain(),
    };
    let intr = match Interrupt::install() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tandem-cli: cannot install signal handlers: {e}");
            return Exit::Network;
        }
    };
    let msrp_options = tandem_client_core::msrp::MsrpOptions {
        tls: ua.tls_client.clone(),
        ..Default::default()
    };
    if let Command::Buddy { xcap_root, action } = command {
        return buddy(
            &account,
            xcap_root.as_deref(),
            ua.tls_client.clone(),
            action,
            intr,
        )
        .await;
    }
    let (agent, events) = match UserAgent::new(ua).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return Exit::for_error(&e);
        }
    };
    let exit = match command {
        Command::Register {
            duration,
            keep,
            contact,
        } => register(&agent, &account, duration, keep, contact, intr).await,
        Command::Call {
            uri,
            duration,
            timeout,
            register,
            ..
        } => {
            call(
                &agent, events, &account, &uri, duration, timeout, register, plan, intr,
            )
            .await
        }
        Command::Answer {
            count,
            duration,
            ring,
            reject,
            no_register,
            save_dir,
            ..
        } => {
            let mut msrp = msrp_options;
            if let Some(dir) = save_dir {
                msrp.save_dir = dir;
            }
            let opts = AnswerOptions {
                count,
                duration: duration.map(Duration::from_secs),
                ring: Duration::from_secs(ring),
                reject,
                register: !no_register,
                plan,
                msrp,
                agent: agent.clone(),
            };
            answer(&agent, events, &account, opts, intr).await
        }
        Command::Message {
            uri,
            text,
            cpim,
            imdn,
            wait_imdn,
        } => {
            let mut intr = intr;
            let wait = Duration::from_secs(wait_imdn);
            tokio::select! {
                exit = message(&agent, events, &account, &uri, &text, cpim, &imdn, wait) => exit,
                _ = intr.wait() => Exit::Interrupted,
            }
        }
        Command::Presence {
            status,
            note,
            duration,
        } => {
            publish(
                &agent,
                &account,
                &status,
                note.as_deref(),
                Duration::from_secs(duration),
                intr,
            )
            .await
        }
        Command::Watch {
            uri,
            duration,
            list,
        } => {
            watch(
                &agent,
                &account,
                &uri,
                list,
                duration.map(Duration::from_secs),
                intr,
            )
            .await
        }
        Command::Conference { uri, duration } => {
            crate::conference::run(
                &agent,
                &account,
                &uri,
                duration.map(Duration::from_secs),
                intr,
            )
            .await
        }
        Command::Mwi { uri, duration } => {
            crate::mwi::run(
                &agent,
                &account,
                uri.as_deref(),
                duration.map(Duration::from_secs),
                intr,
            )
            .await
        }
        Command::Options { uri } => {
            let mut intr = intr;
            tokio::select! {
                exit = options(&agent, &account, &uri) => exit,
                _ = intr.wait() => Exit::Interrupted,
            }
        }
        Command::Chat { uri } => match target_uri(&account, &uri) {
            Ok(target) => crate::msrp::chat(&agent, &account, target, msrp_options, intr).await,
            Err(e) => {
                eprintln!("tandem-cli: {e}");
                Exit::Usage
            }
        },
        Command::SendFile { uri, path } => match target_uri(&account, &uri) {
            Ok(target) => {
                crate::msrp::send_file(&agent, &account, target, &path, msrp_options, intr).await
            }
            Err(e) => {
                eprintln!("tandem-cli: {e}");
                Exit::Usage
            }
        },
        // Handled above without a user agent.
        Command::Buddy { .. } => Exit::Usage,
        // Handled in main before any user agent exists.
        Command::Devices | Command::Cameras(_) => Exit::Usage,
    };
    agent.shutdown().await;
    exit
}

/// SIGINT/SIGTERM, listened to from the start of the run so that none is lost.
#[derive(Debug, Clone)]
pub struct Interrupt {
    rx: watch::Receiver<bool>,
}

impl Interrupt {
    /// Installs the signal handlers (inside the runtime) and starts watching.
    pub fn install() -> std::io::Result<Interrupt> {
        let (tx, rx) = watch::channel(false);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                let _ = tx.send(true);
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        Ok(Interrupt { rx })
    }

    /// Resolves once a signal arrived (at once if one already did).
    pub async fn wait(&mut self) {
        if self.rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A background subscription whose events a `watch`-like command prints.
pub trait Watched {
    /// What the subscription reports.
    type Event;
    /// The next event; `None` once the subscription ended for good.
    fn next_event(&mut self) -> impl Future<Output = Option<Self::Event>>;
    /// Ends the subscription (un-subscribing).
    fn end(self) -> impl Future<Output = ()>;
}

/// What a watch loop does after one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep watching.
    Continue,
    /// Stop watching and exit with this code.
    Finish(Exit),
}

/// Runs `sub` for `duration` (or until SIGINT), handing every event to `on_event`, then
/// un-subscribes. Exit: success at the end of the duration or when the events end, interrupted
/// on SIGINT during a timed watch, or what `on_event` finished with.
pub async fn watch_events<S: Watched>(
    mut sub: S,
    duration: Option<Duration>,
    intr: &mut Interrupt,
    mut on_event: impl FnMut(S::Event) -> Flow,
) -> Exit {
    let until = sleep(duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(until);
    let mut exit = Exit::Success;
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = intr.wait() => {
                if duration.is_some() {
                    exit = Exit::Interrupted;
                }
                break;
            }
            ev = sub.next_event() => match ev {
                Some(ev) => {
                    if let Flow::Finish(e) = on_event(ev) {
                        exit = e;
                        break;
                    }
                }
                None => break,
            },
        }
    }
    sub.end().await;
    exit
}

/// Prints `<name> reason=… [retry-after=N] final=yes|no` for a subscription that ended; a final
/// end finishes the watch as refused.
pub fn emit_terminated(
    name: &str,
    reason: Option<&str>,
    retry_after: Option<u32>,
    final_: bool,
) -> Flow {
    let mut line = Event::new(name).kv("reason", reason.unwrap_or("-"));
    if let Some(r) = retry_after {
        line = line.kv("retry-after", r);
    }
    line.kv("final", if final_ { "yes" } else { "no" }).emit();
    if final_ {
        Flow::Finish(Exit::Refused)
    } else {
        Flow::Continue
    }
}

impl Watched for PresenceSubscription {
    type Event = PresenceEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<PresenceEvent>> {
        self.next()
    }
    fn end(self) -> impl Future<Output = ()> {
        self.unsubscribe()
    }
}

fn emit_registered(reg: &Registration, expires: u32, reason: RegReason) {
    let mut ev = Event::new("registered")
        .kv("aor", reg.aor())
        .kv("expires", expires)
        .kv("contact", format!("<{}>", reg.contact()))
        .kv("reason", reason);
    if let Some(mapped) = reg.mapped() {
        ev = ev.kv("mapped", mapped);
    }
    ev.emit();
}

/// Registers; on failure prints `failed` and returns the exit code.
async fn do_register(
    agent: &UserAgent,
    account: &Account,
    contact: Option<String>,
) -> Result<Registration, Exit> {
    let contact = match contact.as_deref().map(parse_uri).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem-cli: --contact: {e}");
            return Err(Exit::Usage);
        }
    };
    let options = RegisterOptions {
        contact,
        ..RegisterOptions::default()
    };
    match agent.register_with(account, options).await {
        Ok(reg) => {
            emit_registered(&reg, reg.expires(), RegReason::Initial);
            Ok(reg)
        }
        Err(e) => {
            eprintln!("tandem-cli: registration failed: {e}");
            emit_failure(&e);
            Err(Exit::for_error(&e))
        }
    }
}

/// Un-registers and prints `unregistered`; returns the exit code for a failure.
async fn do_unregister(reg: Registration) -> Option<Exit> {
    let aor = reg.aor().clone();
    match reg.unregister().await {
        Ok(()) => {
            Event::new("unregistered").kv("aor", aor).emit();
            None
        }
        Err(e) => {
            eprintln!("tandem-cli: un-registration failed: {e}");
            emit_failure(&e);
            Some(Exit::for_error(&e))
        }
    }
}

/// Reports refresh outcomes of a registration while `until` runs.
async fn next_reg_event(reg: &mut Option<Registration>) -> Option<RegEvent> {
    match reg {
        Some(r) => r.next_event().await,
        None => std::future::pending().await,
    }
}

fn report_reg_event(reg: &Option<Registration>, event: Option<RegEvent>) {
    match (reg, event) {
        (Some(r), Some(RegEvent::Refreshed { expires })) => {
            emit_registered(r, expires, RegReason::Refresh);
        }
        (
            Some(r),
            Some(RegEvent::Reregistered {
                expires, reason, ..
            }),
        ) => {
            emit_registered(r, expires, reason);
        }
        (_, Some(RegEvent::KeepaliveMapped { mapped })) => {
            Event::new("keepalive").kv("mapped", mapped).emit();
        }
        (_, Some(RegEvent::RefreshFailed(e))) => {
            eprintln!("tandem-cli: registration refresh failed (will retry): {e}");
        }
        _ => {}
    }
}

async fn register(
    agent: &UserAgent,
    account: &Account,
    duration: u64,
    keep: bool,
    contact: Option<String>,
    mut intr: Interrupt,
) -> Exit {
    let reg = tokio::select! {
        r = do_register(agent, account, contact) => match r {
            Ok(r) => r,
            Err(code) => return code,
        },
        _ = intr.wait() => return Exit::Interrupted,
    };
    let mut reg = Some(reg);
    let until = sleep(Duration::from_secs(duration));
    tokio::pin!(until);
    let mut exit = Exit::Success;
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = intr.wait() => {
                exit = Exit::Interrupted;
                break;
            }
            ev = next_reg_event(&mut reg) => report_reg_event(&reg, ev),
        }
    }
    let Some(reg) = reg else { return exit };
    if keep {
        reg.keep();
        return exit;
    }
    match do_unregister(reg).await {
        Some(code) if exit == Exit::Success => code,
        _ => exit,
    }
}

/// Where stdin commands go, and whether a run is stopping.
struct Shared {
    controls: broadcast::Sender<Control>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl Shared {
    fn new() -> Shared {
        let (stop_tx, stop_rx) = watch::channel(false);
        Shared {
            controls: spawn_stdin_reader(),
            stop_tx,
            stop_rx,
        }
    }

    fn context<'a>(
        &self,
        account: &'a Account,
        plan: &'a CallPlan,
        hold_for: Option<Duration>,
    ) -> DriveContext<'a> {
        DriveContext {
            account,
            plan,
            hold_for,
            controls: Some(self.controls.subscribe()),
            stop: self.stop_rx.clone(),
        }
    }
}

/// The exit code of a driven call.
fn exit_for_outcome(outcome: &Outcome) -> Exit {
    match outcome {
        Outcome::Ended { by, reason } => exit_for_end(*by, *reason),
        Outcome::Failed(e) => Exit::for_error(e),
        Outcome::Lost => Exit::Network,
    }
}

#[allow(clippy::too_many_arguments)]
async fn call(
    agent: &UserAgent,
    mut events: UaEvents,
    account: &Account,
    uri: &str,
    duration: u64,
    timeout: u64,
    register: bool,
    plan: CallPlan,
    mut intr: Interrupt,
) -> Exit {
    let target = match account.target_uri(uri) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return Exit::Usage;
        }
    };
    let mut reg = None;
    if register {
        tokio::select! {
            r = do_register(agent, account, None) => match r {
                Ok(r) => reg = Some(r),
                Err(code) => return code,
            },
            _ = intr.wait() => return Exit::Interrupted,
        }
    }
    let options = CallOptions {
        timeout: Some(Duration::from_secs(timeout)),
        media: plan.media.clone(),
    };
    let hold_for = Some(Duration::from_secs(duration));
    let shared = Shared::new();
    let mut exit = match agent.call(account, target, options).await {
        Ok(call) => {
            let follow_up = plan.devices_only();
            let first = drive(call, shared.context(account, &plan, hold_for));
            tokio::pin!(first);
            // The call, plus the calls a transfer or a replacement starts in its place.
            let mut running = 1u32;
            let mut interrupted = false;
            let mut last = Outcome::Lost;
            let mut followers = tokio::task::JoinSet::new();
            let mut first_done = false;
            while running > 0 {
                tokio::select! {
                    outcome = &mut first, if !first_done => {
                        first_done = true;
                        running -= 1;
                        last = outcome;
                    }
                    Some(done) = followers.join_next() => {
                        running -= 1;
                        if let Ok(outcome) = done {
                            last = outcome;
                        }
                    }
                    ev = events.next() => match ev {
                        Some(UaEvent::TransferCall { call, .. }) | Some(UaEvent::CallReplaced { call, .. }) => {
                            running += 1;
                            let account = account.clone();
                            let plan = follow_up.clone();
                            let controls = shared.controls.subscribe();
                            let stop = shared.stop_rx.clone();
                            followers.spawn(async move {
                                let ctx = DriveContext {
                                    account: &account,
                                    plan: &plan,
                                    hold_for,
                                    controls: Some(controls),
                                    stop,
                                };
                                drive(call, ctx).await
                            });
                        }
                        Some(UaEvent::IncomingCall(incoming)) => {
                            // A caller takes no second call.
                            let _ = incoming.reject(486);
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = intr.wait(), if !interrupted => {
                        interrupted = true;
                        let _ = shared.stop_tx.send(true);
                    }
                    ev = next_reg_event(&mut reg) => report_reg_event(&reg, ev),
                }
            }
            if interrupted {
                Exit::Interrupted
            } else {
                exit_for_outcome(&last)
            }
        }
        Err(e) => {
            eprintln!("tandem-cli: call failed: {e}");
            emit_failure(&e);
            Exit::for_error(&e)
        }
    };
    if let Some(r) = reg
        && let Some(code) = do_unregister(r).await
        && exit == Exit::Success
    {
        exit = code;
    }
    exit
}

fn emit_ended(by: EndedBy, reason: EndReason) {
    Event::new("ended").kv("by", by).kv("reason", reason).emit();
}

/// The exit code of a call that ended after being set up (or cancelled).
fn exit_for_end(by: EndedBy, reason: EndReason) -> Exit {
    match (by, reason) {
        (_, EndReason::Error) => Exit::Network,
        (_, EndReason::MediaFailed) => Exit::Network,
        (EndedBy::Local, EndReason::Timeout) => Exit::Network,
        _ => Exit::Success,
    }
}

/// Options of the answer command.
#[derive(Debug, Clone)]
struct AnswerOptions {
    count: Option<u64>,
    duration: Option<Duration>,
    ring: Duration,
    reject: Option<u16>,
    register: bool,
    plan: CallPlan,
    msrp: tandem_client_core::msrp::MsrpOptions,
    agent: UserAgent,
}

async fn answer(
    agent: &UserAgent,
    mut events: UaEvents,
    account: &Account,
    opts: AnswerOptions,
    mut intr: Interrupt,
) -> Exit {
    let interrupted_exit = if opts.count.is_none() {
        Exit::Success
    } else {
        Exit::Interrupted
    };
    let mut reg = None;
    if opts.register {
        tokio::select! {
            r = do_register(agent, account, None) => match r {
                Ok(r) => reg = Some(r),
                Err(code) => return code,
            },
            _ = intr.wait() => return interrupted_exit,
        }
    }
    let shared = Shared::new();
    let follow_up = opts.plan.devices_only();
    // Each finished call reports whether it counts for --count (a transfer's follow-up call does not).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<bool>();
    let mut active = 0u64;
    let mut finished = 0u64;
    let mut started = 0u64;
    let mut exit = Exit::Success;
    loop {
        if opts.count.is_some_and(|n| finished >= n) && active == 0 {
            break;
        }
        tokio::select! {
            ev = events.next() => match ev {
                Some(UaEvent::IncomingCall(incoming)) => {
                    Event::new("incoming")
                        .kv("from", incoming.from().map(|u| u.to_string()).unwrap_or_default())
                        .kv("call-id", incoming.call_id())
                        .emit();
                    if opts.count.is_some_and(|n| started >= n) {
                        // Already handling the last call we were asked for.
                        let _ = incoming.reject(486);
                        continue;
                    }
                    started += 1;
                    active += 1;
                    let opts = opts.clone();
                    let account = account.clone();
                    let done = done_tx.clone();
                    let controls = shared.controls.subscribe();
                    let stop = shared.stop_rx.clone();
                    tokio::spawn(async move {
                        handle_incoming(incoming, &account, &opts, controls, stop).await;
                        let _ = done.send(true);
                    });
                }
                Some(UaEvent::TransferCall { call, .. }) | Some(UaEvent::CallReplaced { call, .. }) => {
                    // A call placed (transfer) or accepted (Replaces) in place of one of ours: it keeps the run
                    // going, but the call it replaces already counts for --count.
                    active += 1;
                    let account = account.clone();
                    let plan = follow_up.clone();
                    let done = done_tx.clone();
                    let controls = shared.controls.subscribe();
                    let stop = shared.stop_rx.clone();
                    let hold_for = opts.duration;
                    tokio::spawn(async move {
                        let ctx = DriveContext {
                            account: &account,
                            plan: &plan,
                            hold_for,
                            controls: Some(controls),
                            stop,
                        };
                        drive(call, ctx).await;
                        let _ = done.send(false);
                    });
                }
                Some(UaEvent::Message(msg)) => emit_message(&msg),
                Some(UaEvent::Imdn { from, imdn }) => emit_imdn(&from, &imdn),
                Some(_) => {}
                None => {
                    eprintln!("tandem-cli: the user agent stopped");
                    exit = Exit::Network;
                    break;
                }
            },
            Some(counts) = done_rx.recv() => {
                active = active.saturating_sub(1);
                finished += u64::from(counts);
            }
            _ = intr.wait() => {
                exit = interrupted_exit;
                break;
            }
            ev = next_reg_event(&mut reg) => report_reg_event(&reg, ev),
        }
    }
    // Hang up what is still running, and wait (bounded) for those calls to end.
    let _ = shared.stop_tx.send(true);
    let wait_until = Instant::now() + Duration::from_secs(10);
    while active > 0 {
        tokio::select! {
            Some(_) = done_rx.recv() => active -= 1,
            _ = sleep_until(wait_until) => break,
        }
    }
    if let Some(r) = reg
        && let Some(code) = do_unregister(r).await
        && exit == Exit::Success
    {
        exit = code;
    }
    exit
}

/// Rings, answers (or rejects) one incoming call and follows it to its end.
async fn handle_incoming(
    mut incoming: IncomingCall,
    account: &Account,
    opts: &AnswerOptions,
    controls: broadcast::Receiver<Control>,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(code) = opts.reject {
        match incoming.reject(code) {
            Ok(()) => Event::new("rejected").kv("status", code).emit(),
            Err(_) => emit_ended(EndedBy::Remote, EndReason::Cancel),
        }
        return;
    }
    if crate::msrp::is_msrp(&incoming) {
        crate::msrp::answer(&opts.agent, incoming, account, opts.msrp.clone(), stop).await;
        return;
    }
    if incoming.ring().is_ok() {
        Event::new("ringing").kv("status", 180).emit();
    }
    let ring_until = sleep(opts.ring);
    tokio::pin!(ring_until);
    tokio::select! {
        _ = &mut ring_until => {}
        _ = incoming.cancelled() => {
            emit_ended(EndedBy::Remote, EndReason::Cancel);
            return;
        }
        _ = stop.wait_for(|s| *s) => {
            let _ = incoming.reject(480);
            Event::new("rejected").kv("status", 480).emit();
            return;
        }
    }
    let options = CoreAnswerOptions {
        account: Some(account.clone()),
        media: opts.plan.media.clone(),
    };
    let call = match incoming.accept_with(options).await {
        Ok(c) => c,
        Err(UaError::Cancelled) => {
            emit_ended(EndedBy::Remote, EndReason::Cancel);
            return;
        }
        Err(e) => {
            eprintln!("tandem-cli: cannot answer: {e}");
            emit_failure(&e);
            return;
        }
    };
    let ctx = DriveContext {
        account,
        plan: &opts.plan,
        hold_for: opts.duration,
        controls: Some(controls),
        stop,
    };
    drive(call, ctx).await;
}

/// Prints a received instant message as a `message` line.
fn emit_message(msg: &ReceivedMessage) {
    let mut ev = Event::new("message")
        .kv("from", &msg.from)
        .kv("type", &msg.content_type)
        .kv("id", &msg.message_id)
        .kv("cpim", if msg.cpim { "yes" } else { "no" });
    if let Some(stored) = &msg.stored_id {
        ev = ev.kv("stored-id", stored);
    }
    match msg.text() {
        Some(text) => ev.kv("text", text).emit(),
        None => ev.kv("bytes", msg.body.len()).emit(),
    }
}

/// Prints a disposition notification about a message we sent as an `imdn` line.
fn emit_imdn(from: &str, imdn: &Imdn) {
    let (kind, status) = match &imdn.notification {
        Notification::Delivery(s) => ("delivery", format!("{s:?}")),
        Notification::Display(s) => ("display", format!("{s:?}")),
        Notification::Processing(s) => ("processing", format!("{s:?}")),
    };
    Event::new("imdn")
        .kv("from", from)
        .kv("id", &imdn.message_id)
        .kv("notification", kind)
        .kv("status", status.to_lowercase())
        .emit();
}

/// Turns a URI argument into a target URI (a bare name or name@host is completed).
fn target_uri(account: &Account, uri: &str) -> Result<Uri, UaError> {
    if account.domain.is_empty() {
        let text = if uri.contains(':') && (uri.starts_with("sip") || uri.starts_with("tel")) {
            uri.to_string()
        } else {
            format!("sip:{uri}")
        };
        parse_uri(&text)
    } else {
        account.target_uri(uri)
    }
}

/// Sends one MESSAGE and prints `message status=… stored=yes|no id=…`.
#[allow(clippy::too_many_arguments)]
async fn message(
    agent: &UserAgent,
    mut events: UaEvents,
    account: &Account,
    uri: &str,
    text: &str,
    cpim: bool,
    imdn: &[String],
    wait_imdn: Duration,
) -> Exit {
    let target = match target_uri(account, uri) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return Exit::Usage;
        }
    };
    let dispositions: Vec<Disposition> = imdn
        .iter()
        .filter_map(|d| match d.as_str() {
            "delivery" => Some(Disposition::PositiveDelivery),
            "display" => Some(Disposition::Display),
            _ => None,
        })
        .collect();
    let outgoing = if cpim || !dispositions.is_empty() {
        OutgoingMessage::cpim_text(text, &dispositions)
    } else {
        OutgoingMessage::text(text)
    };
    let outcome = match agent.send_message(account, target, outgoing).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tandem-cli: MESSAGE failed: {e}");
            emit_failure(&e);
            return Exit::for_error(&e);
        }
    };
    Event::new("message")
        .kv("status", outcome.status)
        .kv("stored", if outcome.stored { "yes" } else { "no" })
        .kv("id", &outcome.message_id)
        .emit();
    if wait_imdn.is_zero() {
        return Exit::Success;
    }
    let deadline = sleep(wait_imdn);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(UaEvent::Imdn { from, imdn }) => emit_imdn(&from, &imdn),
                Some(UaEvent::Message(msg)) => emit_message(&msg),
                Some(_) => {}
                None => return Exit::Success,
            },
            _ = &mut deadline => return Exit::Success,
        }
    }
}

/// The command-line name of an availability.
fn availability_name(a: Availability) -> &'static str {
    match a {
        Availability::Available => "available",
        Availability::Away => "away",
        Availability::Busy => "busy",
        Availability::OnThePhone => "on-the-phone",
        _ => "offline",
    }
}

/// Publishes our availability, keeps it for `duration`, then removes it.
async fn publish(
    agent: &UserAgent,
    account: &Account,
    status: &str,
    note: Option<&str>,
    duration: Duration,
    mut intr: Interrupt,
) -> Exit {
    let availability = match status {
        "available" => Availability::Available,
        "away" => Availability::Away,
        "busy" => Availability::Busy,
        "on-the-phone" => Availability::OnThePhone,
        other => {
            eprintln!("tandem-cli: unknown --status {other}");
            return Exit::Usage;
        }
    };
    let publication = tokio::select! {
        p = agent.publish(account, availability, note) => p,
        _ = intr.wait() => return Exit::Interrupted,
    };
    let mut publication = match publication {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tandem-cli: PUBLISH failed: {e}");
            emit_failure(&e);
            return Exit::for_error(&e);
        }
    };
    Event::new("published")
        .kv("status", availability_name(availability))
        .kv("etag", publication.etag().await.unwrap_or_default())
        .kv("expires", publication.expires().await)
        .emit();
    let until = sleep(duration);
    tokio::pin!(until);
    let mut exit = Exit::Success;
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = intr.wait() => {
                exit = Exit::Interrupted;
                break;
            }
            ev = publication.next_event() => match ev {
                Some(PublishEvent::Refreshed { expires }) => {
                    Event::new("publish-refreshed").kv("expires", expires).emit();
                }
                Some(PublishEvent::Republished) => Event::new("republished").emit(),
                Some(PublishEvent::RefreshFailed(e)) => {
                    Event::new("warning").kv("reason", format!("refresh failed: {e}")).emit();
                }
                Some(_) => {}
                // The publication's task ended; keep waiting for the deadline.
                None => {
                    tokio::select! {
                        _ = &mut until => {}
                        _ = intr.wait() => exit = Exit::Interrupted,
                    }
                    break;
                }
            },
        }
    }
    match publication.remove().await {
        Ok(()) => Event::new("unpublished").emit(),
        Err(e) => {
            eprintln!("tandem-cli: removing the publication failed: {e}");
            emit_failure(&e);
            if exit == Exit::Success {
                exit = Exit::for_error(&e);
            }
        }
    }
    exit
}

/// The first note of a presence document (document, person, then tuple notes).
fn presence_note(p: &Presence) -> Option<String> {
    p.notes
        .first()
        .or_else(|| p.persons.iter().find_map(|x| x.notes.first()))
        .or_else(|| p.tuples.iter().find_map(|t| t.notes.first()))
        .map(|n| n.text.clone())
}

/// Subscribes to a presentity and prints its state changes for `duration` (or until SIGINT).
async fn watch(
    agent: &UserAgent,
    account: &Account,
    uri: &str,
    list: bool,
    duration: Option<Duration>,
    mut intr: Interrupt,
) -> Exit {
    let target = match target_uri(account, uri) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return Exit::Usage;
        }
    };
    if list {
        return crate::watch_list::run(agent, account, target, duration, intr).await;
    }
    let sub = agent.subscribe_presence(account, target);
    watch_events(sub, duration, &mut intr, |ev| match ev {
        PresenceEvent::State(p) => {
            let mut line = Event::new("presence")
                .kv("entity", &p.entity)
                .kv("status", availability_name(p.availability()));
            if let Some(note) = presence_note(&p) {
                line = line.kv("note", note);
            }
            line.emit();
            Flow::Continue
        }
        PresenceEvent::Pending => {
            Event::new("presence-pending").emit();
            Flow::Continue
        }
        PresenceEvent::Terminated {
            reason,
            retry_after,
            final_,
        } => emit_terminated(
            "presence-terminated",
            reason.as_deref(),
            retry_after,
            final_,
        ),
        _ => Flow::Continue,
    })
    .await
}

async fn options(agent: &UserAgent, account: &Account, uri: &str) -> Exit {
    let target = match target_uri(account, uri) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return Exit::Usage;
        }
    };
    let result = if account.user.is_empty() && account.proxy.is_none() {
        agent.options(target).await
    } else {
        agent.options_as(account, target).await
    };
    match result {
        Ok(r) => {
            Event::new("options")
                .kv("status", r.status)
                .kv("reason", &r.reason)
                .emit();
            if (200..300).contains(&r.status) {
                Exit::Success
            } else {
                Exit::Refused
            }
        }
        Err(e) => {
            eprintln!("tandem-cli: OPTIONS failed: {e}");
            emit_failure(&e);
            Exit::for_error(&e)
        }
    }
}

/// `buddy add|del|list` over XCAP (no SIP user agent needed).
async fn buddy(
    account: &Account,
    xcap_root: Option<&str>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    action: crate::args::BuddyAction,
    mut intr: Interrupt,
) -> Exit {
    let Some(root) = xcap_root else {
        eprintln!("tandem-cli: buddy needs --xcap-root https://HOST:PORT/xcap-root");
        return Exit::Usage;
    };
    let tls = match tls {
        Some(t) => t,
        None => match crate::tls::client_config(None) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tandem-cli: {e:#}");
                return Exit::Usage;
            }
        },
    };
    tokio::select! {
        exit = crate::buddy::run(account, root, tls, action) => exit,
        _ = intr.wait() => Exit::Interrupted,
    }
}
