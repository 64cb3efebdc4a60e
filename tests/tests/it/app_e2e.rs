//! The desktop app end to end, in the real engine: the built `tandem` binary under Xvfb,
//! driven through WebKitWebDriver (W3C WebDriver). First-run wizard with the bundled lab
//! server; a call to tandem-cli (auto-answer) with the call timer running; a call from baresip
//! answered in the app; a chat message each way with tandem-cli; a watcher request allowed in
//! the app; a buddy's presence change appearing; hang up. A screenshot of every step is kept in
//! `target/e2e/` (`E2E_SHOTS` overrides the folder).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{ok, secs};
use tandem_tests::desktop::{DesktopOptions, DesktopSession};
use tandem_tests::process::Stream;
use tandem_tests::{Baresip, BaresipOptions, CliAccount, TestDir, Transport};

/// Where the screenshots go: `$E2E_SHOTS`, else `<target>/e2e` next to the test binary's
/// profile folder.
fn shots_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("E2E_SHOTS") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // …/target/debug/deps/it-HASH → …/target/e2e
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("e2e"))
        .unwrap_or_else(|| PathBuf::from("target/e2e"))
}

/// True when the tools of this test are installed (xtask installs them; a bare machine skips
/// with a message instead of failing on something unrelated to the app).
fn tools_present() -> bool {
    ["Xvfb", "WebKitWebDriver", "keyctl", "baresip", "curl"]
        .iter()
        .all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Saves the next numbered screenshot into `dir`.
fn shot(app: &DesktopSession, dir: &Path, n: &mut u32, name: &str) {
    *n += 1;
    let path = dir.join(format!("{:02}-{name}.png", *n));
    let r = app.screenshot(&path);
    must(app, r);
}

/// The test fails with the app's and the driver's logs attached.
#[track_caller]
fn must<T>(app: &DesktopSession, r: tandem_tests::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}\n--- logs ---\n{}", app.tails()),
    }
}

fn lab_user(app: &DesktopSession, user: &str) -> tandem_tests::Result<String> {
    let e = app.wait(
        &format!("[data-testid=lab-user][data-user={user}]"),
        secs(10),
    )?;
    Ok(app.attribute(&e, "data-password")?.unwrap_or_default())
}

fn addr_attr(app: &DesktopSession, attr: &str) -> tandem_tests::Result<SocketAddr> {
    let e = app.wait("[data-testid=lab-info]", secs(10))?;
    let text = app.attribute(&e, attr)?.unwrap_or_default();
    text.parse()
        .map_err(|_| tandem_tests::HarnessError::Protocol {
            what: "the app".into(),
            detail: format!("{attr}={text:?} is not an address"),
        })
}

/// The pres-rules document allowing `watcher` (RFC 5025).
fn allow_rules(watcher: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy">
  <cr:rule id="allow-1">
    <cr:conditions><cr:identity><cr:one id="{watcher}"/></cr:identity></cr:conditions>
    <cr:actions><sub-handling>allow</sub-handling></cr:actions>
    <cr:transformations>
      <provide-services><all-services/></provide-services>
      <provide-persons><all-persons/></provide-persons>
      <provide-devices><all-devices/></provide-devices>
      <provide-all-attributes/>
    </cr:transformations>
  </cr:rule>
</cr:ruleset>
"#
    )
}

fn find_ca(data_dir: &Path) -> PathBuf {
    data_dir.join("lab").join("ca.pem")
}

#[test]
fn desktop_app_end_to_end() {
    if !tools_present() {
        eprintln!(
            "skipped: Xvfb, WebKitWebDriver, keyctl, baresip or curl missing (cargo xtask test installs them)"
        );
        return;
    }
    let dir = ok(TestDir::new("app-e2e"));
    let shots = shots_dir();
    // Screenshots of an earlier run go (the ui's phone shots in the `phone/` folder stay).
    if let Ok(entries) = std::fs::read_dir(&shots) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "png") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let service = format!("tandem-e2e-{}", std::process::id());
    let app = ok(DesktopSession::start(
        dir.path(),
        DesktopOptions {
            env: vec![
                ("TANDEM_KEYRING_SERVICE".into(), service),
                ("TANDEM_CAPTURE".into(), "tone:440".into()),
                ("TANDEM_PLAYBACK".into(), "null".into()),
                ("TANDEM_SIP_IP".into(), "127.0.0.1".into()),
            ],
            ..DesktopOptions::default()
        },
    ));
    let data_dir = app.data_dir();

    // 1. First run: the wizard; the bundled lab server; signed in as alice.
    let mut n = 0;
    must(
        &app,
        app.wait_for("button", secs(30), |t| {
            t.contains("Use the bundled lab server")
        })
        .map(|_| ()),
    );
    shot(&app, &shots, &mut n, "wizard");
    let clicked = std::time::Instant::now();
    let r = app.click_button("Use the bundled lab server", secs(5));
    must(&app, r);
    let reg = "[data-testid='reg-alice@tandem.lab']";
    must(
        &app,
        app.wait_for(reg, secs(20), |t| t == "Signed in")
            .map(|_| ()),
    );
    // For the closing numbers: lab server start and first registration, as the user sees it
    // (including the driver's 150 ms polling).
    eprintln!(
        "app-e2e: bundled lab started and alice signed in {} ms after the click",
        clicked.elapsed().as_millis()
    );
    let udp = must(&app, addr_attr(&app, "data-udp"));
    let xcap = must(&app, addr_attr(&app, "data-xcap"));
    // The demo accounts' passwords are shown (the lab is local and for learning).
    let summary = must(&app, app.wait("[data-testid=lab-users] summary", secs(5)));
    must(&app, app.click(&summary));
    let bob_pw = must(&app, lab_user(&app, "bob"));
    let carol_pw = must(&app, lab_user(&app, "carol"));
    shot(&app, &shots, &mut n, "signed-in");
    let idle = must(&app, app.app_pss_kib());
    assert!(idle > 0, "no app processes found under the driver");
    let app = &app;

    // 2. Call tandem-cli (bob, auto-answer) and see the call timer run.
    let mut bob_account = CliAccount::new("bob", "tandem.lab", &bob_pw, udp, Transport::Udp);
    bob_account.verbose = false;
    let mut bob = ok(bob_account.spawn("bob-answer", &["answer"], dir.path()));
    ok(bob.wait_for_line(Stream::Stdout, "registered", secs(15)));
    let target = must(app, app.wait("input[inputmode=tel]", secs(5)));
    must(app, app.type_text(&target, "bob\n"));
    must(
        app,
        app.wait_for("[data-testid=call-timer]", secs(20), |t| {
            timer_secs(t).is_some_and(|s| s >= 2)
        })
        .map(|_| ()),
    );
    ok(bob.wait_for_line(Stream::Stdout, "answered", secs(5)));
    shot(app, &shots, &mut n, "call-to-cli-timer");
    let in_call = must(app, app.app_pss_kib());
    eprintln!(
        "app-e2e: PSS of the app and its WebKit processes: idle {} MiB, in a call {} MiB",
        idle / 1024,
        in_call / 1024
    );
    must(app, app.click_button("Hang up", secs(5)));
    must(app, wait_gone(app, "[data-testid=call-timer]", secs(10)));
    ok(bob.wait_for_line(Stream::Stdout, "ended", secs(10)));

    // 3. baresip (carol) calls alice; the app rings; answer; the timer runs; hang up.
    let mut carol_opts = BaresipOptions::new("carol", "tandem.lab", &carol_pw, udp);
    carol_opts.auto_answer = false;
    let mut carol = ok(Baresip::start(carol_opts, &ok(dir.subdir("carol"))));
    ok(carol.wait_registered(secs(15)));
    ok(carol.command("dial", "sip:alice@tandem.lab", secs(5)));
    must(
        app,
        app.wait_for("[role=alertdialog]", secs(15), |t| t.contains("carol"))
            .map(|_| ()),
    );
    shot(app, &shots, &mut n, "incoming-from-baresip");
    must(app, app.click_button("Answer", secs(5)));
    ok(carol.wait_event_type("CALL_ESTABLISHED", secs(10)));
    must(
        app,
        app.wait_for("[data-testid=call-timer]", secs(10), |t| {
            timer_secs(t).is_some_and(|s| s >= 1)
        })
        .map(|_| ()),
    );
    shot(app, &shots, &mut n, "answered-baresip");
    must(app, app.click_button("Hang up", secs(5)));
    ok(carol.wait_event_type("CALL_CLOSED", secs(10)));
    must(app, wait_gone(app, "[data-testid=call-timer]", secs(10)));

    // 4. Chat with bob both ways.
    must(app, app.click_button("Chat", secs(5)));
    let to = must(app, app.wait("[data-testid=chat-new-to]", secs(5)));
    must(app, app.type_text(&to, "bob\n"));
    let input = must(app, app.wait("[data-testid=chat-input]", secs(5)));
    must(
        app,
        app.type_text(&input, "Hello Bob, from the desktop app\n"),
    );
    ok(bob.wait_for_line(
        Stream::Stdout,
        "message from=sip:alice@tandem.lab.*Hello Bob, from the desktop app",
        secs(10),
    ));
    let reply = ok(bob_account.run(
        "bob-message",
        &["message", "sip:alice@tandem.lab", "Hi Alice, bob here"],
        dir.path(),
        secs(15),
    ));
    assert_eq!(reply.code(), Some(0), "{}", reply.dump());
    must(
        app,
        app.wait_for("[data-testid=message-incoming]", secs(10), |t| {
            t.contains("Hi Alice, bob here")
        })
        .map(|_| ()),
    );
    must(
        app,
        app.wait_for("[data-testid=message-status]", secs(10), |t| {
            t.contains("Sent") || t.contains("Delivered") || t.contains("Read")
        })
        .map(|_| ()),
    );
    shot(app, &shots, &mut n, "chat");

    // 5. Presence: bob asks to watch alice; alice allows him in the app; bob sees her.
    let mut watch = ok(bob_account.spawn(
        "bob-watch",
        &["watch", "sip:alice@tandem.lab", "--duration", "60"],
        dir.path(),
    ));
    ok(watch.wait_for_line(Stream::Stdout, "presence-pending", secs(15)));
    must(app, app.click_button("Contacts", secs(5)));
    must(
        app,
        app.wait_for("[data-testid=watcher]", secs(15), |t| t.contains("bob"))
            .map(|_| ()),
    );
    shot(app, &shots, &mut n, "watcher-request");
    must(app, app.click_button("Allow", secs(5)));
    ok(watch.wait_for_line(
        Stream::Stdout,
        "presence entity=sip:alice@tandem.lab status=available",
        secs(15),
    ));

    // alice adds bob; bob allows alice (pres-rules over XCAP) and publishes busy: it appears.
    let uri = must(app, app.wait("[data-testid=contact-uri]", secs(5)));
    must(app, app.type_text(&uri, "bob\n"));
    must(
        app,
        app.wait_for("[data-testid=contact]", secs(15), |t| {
            t.contains("sip:bob@tandem.lab")
        })
        .map(|_| ()),
    );
    let rules = dir.path().join("bob-pres-rules.xml");
    std::fs::write(&rules, allow_rules("sip:alice@tandem.lab")).expect("writing pres-rules");
    let url = format!("https://{xcap}/xcap-root/pres-rules/users/sip:bob@tandem.lab/index");
    let curl = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "20", "-X", "PUT", "--digest"])
        .args(["-u", &format!("bob:{bob_pw}")])
        .args(["-H", "Content-Type: application/auth-policy+xml"])
        .arg("--cacert")
        .arg(find_ca(&data_dir))
        .arg("--data-binary")
        .arg(format!("@{}", rules.display()))
        .arg(&url)
        .output();
    let curl = curl.unwrap_or_else(|e| panic!("curl: {e}"));
    assert!(
        curl.status.success(),
        "curl PUT {url}: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    let mut publish = ok(bob_account.spawn(
        "bob-presence",
        &[
            "presence",
            "--status",
            "busy",
            "--note",
            "in a meeting",
            "--duration",
            "60",
        ],
        dir.path(),
    ));
    ok(publish.wait_for_line(Stream::Stdout, "published", secs(15)));
    must(
        app,
        app.wait_for("[data-testid=contact-status]", secs(15), |t| {
            t.contains("Busy") && t.contains("in a meeting")
        })
        .map(|_| ()),
    );
    shot(app, &shots, &mut n, "buddy-presence");

    publish.stop();
    watch.stop();
    bob.stop();
}

/// The seconds shown by the call timer (`m:ss` or `h:mm:ss`).
fn timer_secs(text: &str) -> Option<u64> {
    text.trim()
        .split(':')
        .try_fold(0u64, |acc, part| Some(acc * 60 + part.parse::<u64>().ok()?))
}

/// Waits until nothing matches `css`.
fn wait_gone(app: &DesktopSession, css: &str, timeout: Duration) -> tandem_tests::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if app.find_all(css)?.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(tandem_tests::HarnessError::Timeout {
                what: format!("{css} to disappear"),
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}
