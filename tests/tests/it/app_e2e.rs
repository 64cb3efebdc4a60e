//! The desktop app end to end, in the real engine: the built `tandem` binary under Xvfb,
//! driven through WebKitWebDriver (W3C WebDriver). First-run wizard with the bundled lab
//! server; a call to tandem-cli (auto-answer) with the call timer running; a call from baresip
//! answered in the app; a chat message each way with tandem-cli; a watcher request allowed in
//! the app; a buddy's presence change appearing; hang up; a file each way over MSRP; failures
//! in the account form's connection test (untrusted lab CA with "trust this lab CA", wrong
//! password, unreachable server, expired certificate) and a TLS account signing in; joining a
//! conference room with its roster. A screenshot of every step is kept in `target/e2e/`
//! (`E2E_SHOTS` overrides the folder).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{ok, secs};
use tandem_tests::desktop::{DesktopOptions, DesktopSession};
use tandem_tests::process::Stream;
use tandem_tests::{
    Baresip, BaresipOptions, CliAccount, LabOptions, LabServer, TestDir, Transport,
};

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
    [
        "Xvfb",
        "WebKitWebDriver",
        "keyctl",
        "baresip",
        "curl",
        "dbus-daemon",
        "gst-launch-1.0",
    ]
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
            "skipped: Xvfb, WebKitWebDriver, keyctl, baresip, curl, dbus-daemon or gst-launch-1.0 missing (cargo xtask test installs them)"
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

    // carol's baresip starts now and registers while the app calls bob (step 3 needs it): its
    // start-up and registration then never race the first call's hang-up.
    let mut carol_opts = BaresipOptions::new("carol", "tandem.lab", &carol_pw, udp);
    carol_opts.auto_answer = false;
    let mut carol = ok(Baresip::start(carol_opts, &ok(dir.subdir("carol"))));

    // 2. Call tandem-cli (bob, auto-answer) and see the call timer run.
    let mut bob_account = CliAccount::new("bob", "tandem.lab", &bob_pw, udp, Transport::Udp);
    bob_account.verbose = false;
    let bob_files = ok(dir.subdir("bob-files"));
    let mut bob = ok(bob_account.spawn(
        "bob-answer",
        &["answer", "--save-dir", &bob_files.display().to_string()],
        dir.path(),
    ));
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
    // ICE's path shows in the call-quality badge, with the reason.
    let path = must(app, app.wait("[data-testid=media-path]", secs(10)));
    let kind = must(app, app.attribute(&path, "data-kind")).unwrap_or_default();
    eprintln!(
        "app-e2e: media path of the call to tandem-cli: {kind}: {}",
        must(app, app.text(&path))
    );
    assert_ne!(kind, "failed", "ICE found no path between two local phones");
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

    // 2b. A sip: link, as a browser opens it: a second `tandem sip:…` hands the link to the
    // running app over the session bus (single instance) and exits; the app asks before
    // calling, and calls once confirmed.
    let second = must(
        app,
        app.launch_again(&["sip:bob@tandem.lab?subject=From%20a%20link"], secs(30)),
    );
    assert!(second.success(), "the second launch failed: {second}");
    must(
        app,
        app.wait_for("[data-testid=link-offer]", secs(10), |t| {
            t.contains("sip:bob@tandem.lab") && t.contains("From a link")
        })
        .map(|_| ()),
    );
    // Exactly one window: the second launch opened none of its own.
    assert_eq!(must(app, app.window_count()), 1);
    shot(app, &shots, &mut n, "link-offer");
    must(app, app.click_button("Call now", secs(5)));
    must(
        app,
        app.wait_for("[data-testid=call-timer]", secs(20), |t| {
            timer_secs(t).is_some_and(|s| s >= 1)
        })
        .map(|_| ()),
    );
    ok(bob.wait_for_nth_line(Stream::Stdout, "answered", 2, secs(5)));
    must(app, app.click_button("Hang up", secs(5)));
    must(app, wait_gone(app, "[data-testid=call-timer]", secs(10)));
    ok(bob.wait_for_nth_line(Stream::Stdout, "ended", 2, secs(10)));

    // 3. baresip (carol) calls alice; the app rings; answer; the timer runs; hang up.
    ok(carol.wait_registered(secs(20)));
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
    std::fs::write(&rules, allow_rules("sip:alice@tandem.lab"))
        .unwrap_or_else(|e| panic!("writing pres-rules: {e:?}"));
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

    // 6. Files over MSRP: bob sends alice a file, she accepts it in the chat and it arrives
    // whole; she attaches one for bob, whose `answer` saves it.
    files(app, &bob_account, &mut bob, dir.path(), &shots, &mut n);
    bob.stop();

    // 7. Failures explained in words, and the app keeps working.
    failures(app, dir.path(), &shots, &mut n);

    // 8. Join a conference room from the dialer: the call screen shows the room's roster.
    let summary = must(
        app,
        app.wait("[data-testid=join-conference] summary", secs(5)),
    );
    must(app, app.click(&summary));
    must(app, app.fill("[data-testid=conf-room]", "e2e\n", secs(5)));
    must(
        app,
        app.wait_for("[data-testid=roster]", secs(20), |t| t.contains("alice"))
            .map(|_| ()),
    );
    must(app, app.scroll_to("[data-testid=roster]", secs(5)));
    shot(app, &shots, &mut n, "conference");
    must(app, app.click_button("Hang up", secs(5)));
    must(app, wait_gone(app, "[data-testid=call-timer]", secs(10)));

    // 9. A video call to tandem-cli (bob answers with the test pattern): the peer's pictures
    // change on the call screen, the self view shows ours; camera off, video off, hang up.
    video_call(app, &bob_account, dir.path(), &shots, &mut n, in_call);
}

/// What the remote video canvas shows: its size, the share of pixels that are not black, a
/// checksum of a pixel sample, and the painter's figures (`data-*` of the canvas).
const CANVAS_PROBE: &str = r#"
const c = document.querySelector('[data-testid=remote-video]');
if (!c || c.width === 0 || c.height === 0) return null;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let lit = 0, sum = 0, n = 0;
for (let i = 0; i < d.length; i += 4 * 7) {
  n++;
  if (d[i] + d[i + 1] + d[i + 2] > 60) lit++;
  sum = (sum * 31 + d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7) >>> 0;
}
return { width: c.width, height: c.height, lit: lit / n, sum, frames: Number(c.dataset.frames),
  fps: Number(c.dataset.fps), fetchMs: Number(c.dataset.fetchMs), paintMs: Number(c.dataset.paintMs),
  convertMs: Number(c.dataset.convertMs), yuvMs: Number(c.dataset.yuvMs),
  bytes: Number(c.dataset.bytes) };
"#;

/// Step 9 (see above). `audio_call_pss` is the app's PSS in the audio call of step 2, in KiB.
fn video_call(
    app: &DesktopSession,
    bob_account: &CliAccount,
    dir: &Path,
    shots: &Path,
    n: &mut u32,
    audio_call_pss: u64,
) {
    let mut bob = ok(bob_account.spawn(
        "bob-video",
        &[
            "answer",
            "--video",
            "pattern",
            "--video-size",
            "320x240",
            "--video-fps",
            "15",
        ],
        dir,
    ));
    ok(bob.wait_for_line(Stream::Stdout, "registered", secs(15)));
    let target = must(app, app.wait("input[inputmode=tel]", secs(5)));
    must(app, app.type_text(&target, "bob"));
    let button = must(app, app.wait("[data-testid=video-call]", secs(5)));
    must(app, app.click(&button));
    ok(bob.wait_for_line(Stream::Stdout, "answered", secs(15)));
    ok(bob.wait_for_line(Stream::Stdout, "video started codec=", secs(10)));
    must(
        app,
        app.wait(
            "[data-testid=remote-video]:not([data-frames='0'])",
            secs(20),
        )
        .map(|_| ()),
    );
    let probe = || -> serde_json::Value { must(app, app.execute(CANVAS_PROBE, vec![])) };
    let first = probe();
    std::thread::sleep(Duration::from_millis(1500));
    let second = probe();
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    eprintln!("app-e2e: remote video canvas: {first} then {second}");
    assert_eq!(
        (num(&second, "width"), num(&second, "height")),
        (320.0, 240.0),
        "the canvas has the peer's picture size"
    );
    assert!(
        num(&second, "lit") > 0.5,
        "the peer's pattern is mostly lit, the canvas is not: {second}"
    );
    assert!(
        num(&second, "frames") > num(&first, "frames") && num(&second, "sum") != num(&first, "sum"),
        "the pictures change: {first} then {second}"
    );
    must(
        app,
        app.wait("[data-testid=self-view]:not([data-frames='0'])", secs(10))
            .map(|_| ()),
    );
    // Let the painter's rate settle over a few seconds, then take the figures; memory again
    // later: one picture per stream is kept, so it must not keep growing.
    let early_pss = must(app, app.app_pss_kib());
    std::thread::sleep(Duration::from_secs(3));
    let settled = probe();
    std::thread::sleep(Duration::from_secs(5));
    let pss = must(app, app.app_pss_kib());
    eprintln!(
        "app-e2e: video delivery: {:.1} pictures/s painted (bob sends 15), {:.0} bytes a picture, \
         request-to-paint {:.1} ms (includes waiting for the picture), paint {:.2} ms of which \
         I420-to-RGBA {:.2} ms, Rust side {:.2} ms; PSS in the video call {} MiB after 2 s, \
         {} MiB after 10 s (audio call {} MiB)",
        num(&settled, "fps"),
        num(&settled, "bytes"),
        num(&settled, "fetchMs"),
        num(&settled, "paintMs"),
        num(&settled, "yuvMs"),
        num(&settled, "convertMs"),
        early_pss / 1024,
        pss / 1024,
        audio_call_pss / 1024
    );
    assert!(
        num(&settled, "fps") >= 5.0,
        "the canvas follows the peer's 15 pictures/s at least in part: {settled}"
    );
    must(app, app.scroll_to("[data-testid=video-stage]", secs(5)));
    // WebKitWebDriver now and then fails a screenshot while the canvases repaint: try again.
    let mut r = app.screenshot(&shots.join("video-call.png"));
    for _ in 0..4 {
        if r.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        r = app.screenshot(&shots.join("video-call.png"));
    }
    must(app, r);

    // Camera off: the self view goes, the peer's video keeps coming.
    must(app, app.click_button("Turn camera off", secs(5)));
    must(app, wait_gone(app, "[data-testid=self-view]", secs(10)));
    let before = num(&probe(), "frames");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        num(&probe(), "frames") > before,
        "the peer's video stopped when our camera went off"
    );
    // Video off (re-INVITE): the stage goes, the call goes on.
    must(app, app.click_button("Stop video", secs(5)));
    must(app, wait_gone(app, "[data-testid=video-stage]", secs(15)));
    must(
        app,
        app.wait("[data-testid=call-timer]", secs(5)).map(|_| ()),
    );
    shot(app, shots, n, "video-stopped");
    must(app, app.click_button("Hang up", secs(5)));
    must(app, wait_gone(app, "[data-testid=call-timer]", secs(10)));
    let stats = ok(bob.wait_for_line(Stream::Stdout, "video stats ", secs(10)));
    eprintln!("app-e2e: bob's {stats}");
    let decoded = stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("decoded="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(decoded > 10, "bob decoded too little of our video: {stats}");
    bob.stop();
}

/// Step 6: a file each way between the app and tandem-cli (bob, whose `answer` runs).
fn files(
    app: &DesktopSession,
    bob_account: &CliAccount,
    bob: &mut tandem_tests::ChildGuard,
    dir: &Path,
    shots: &Path,
    n: &mut u32,
) {
    let incoming = dir.join("lab-notes.txt");
    let body: Vec<u8> = (0..200_000u32)
        .map(|i| b"tandem "[(i % 7) as usize])
        .collect();
    std::fs::write(&incoming, &body).unwrap_or_else(|e| panic!("writing the file to send: {e:?}"));
    must(app, app.click_button("Chat", secs(5)));
    let mut send = ok(bob_account.spawn(
        "bob-send-file",
        &[
            "send-file",
            "sip:alice@tandem.lab",
            &incoming.display().to_string(),
        ],
        dir,
    ));
    // The offer makes bob's conversation unread; open it.
    let conversation = must(
        app,
        app.wait(
            "[data-testid=conversation][data-peer*='bob@tandem.lab'][data-unread='1']",
            secs(15),
        ),
    );
    eprintln!(
        "app-e2e: conversation with bob shows {:?}",
        app.text(&conversation).unwrap_or_default()
    );
    must(app, app.click(&conversation));
    let accept = must(app, app.wait("[data-testid=file-accept]", secs(15)));
    must(
        app,
        app.wait_for("[data-testid=transfer][data-state=offered]", secs(5), |t| {
            t.contains("lab-notes.txt")
        })
        .map(|_| ()),
    );
    shot(app, shots, n, "file-offered");
    must(app, app.click(&accept));
    must(
        app,
        app.wait(
            "[data-testid=transfer][data-state=done][data-direction=incoming]",
            secs(20),
        )
        .map(|_| ()),
    );
    ok(send.wait_for_line(Stream::Stdout, "file sent size=200000", secs(10)));
    let saved = app.data_dir().join("received").join("lab-notes.txt");
    let got = std::fs::read(&saved).unwrap_or_else(|e| panic!("{}: {e}", saved.display()));
    assert!(got == body, "the received file differs from the one sent");
    must(
        app,
        app.wait("[data-testid=file-open]", secs(5)).map(|_| ()),
    );

    // alice → bob: the attach button's file picker hands the app the contents.
    let outgoing: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    must(
        app,
        app.pick_file(
            "[data-testid=file-input]",
            "from-alice.bin",
            &outgoing,
            secs(5),
        ),
    );
    let line = ok(bob.wait_for_line(
        Stream::Stdout,
        "file received name=from-alice.bin size=50000",
        secs(20),
    ));
    must(
        app,
        app.wait(
            "[data-testid=transfer][data-state=done][data-direction=outgoing]",
            secs(10),
        )
        .map(|_| ()),
    );
    let path = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("path="))
        .map(|p| p.trim_matches('"').to_owned())
        .unwrap_or_default();
    let path = PathBuf::from(path);
    assert!(
        path.starts_with(dir),
        "bob saved the file outside the test folder: {path:?}"
    );
    let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got == outgoing,
        "bob's copy differs from the file alice attached"
    );
    shot(app, shots, n, "files");
}

/// A self-signed certificate for 127.0.0.1 that expired on 2020-02-01, made with `openssl ca`
/// (OpenSSL 3.0's `req` cannot back-date); returns (certificate, key) paths.
fn expired_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = dir.join("expired-ca");
    std::fs::create_dir_all(&ca).unwrap_or_else(|e| panic!("expired-ca folder: {e:?}"));
    std::fs::write(ca.join("index.txt"), "").unwrap_or_else(|e| panic!("index.txt: {e:?}"));
    std::fs::write(ca.join("serial"), "01\n").unwrap_or_else(|e| panic!("serial: {e:?}"));
    std::fs::write(
        ca.join("ca.cnf"),
        "[ca]\ndefault_ca = lab\n[lab]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = any\ncopy_extensions = copy\nunique_subject = no\n\
         [any]\ncommonName = supplied\n",
    )
    .unwrap_or_else(|e| panic!("ca.cnf: {e:?}"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&ca)
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-subj",
        "/CN=expired.tandem.test",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-out",
        "req.csr",
    ]);
    run(&[
        "ca",
        "-batch",
        "-selfsign",
        "-config",
        "ca.cnf",
        "-keyfile",
        "key.pem",
        "-in",
        "req.csr",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200201000000Z",
        "-out",
        "cert.pem",
    ]);
    (ca.join("cert.pem"), ca.join("key.pem"))
}

/// Tests the account form's connection and waits for the result line.
fn test_connection(app: &DesktopSession, expect: &str, what: &str) -> String {
    let before: Vec<String> = app
        .find_all("[data-testid=test-failure], .ok")
        .unwrap_or_default()
        .iter()
        .filter_map(|e| app.text(e).ok())
        .collect();
    must(app, app.click_button("Test connection", secs(5)));
    let e = must(
        app,
        app.wait_for("[data-testid=test-failure], form .ok", secs(20), |t| {
            t.contains(expect) && !before.iter().any(|b| b == t)
        }),
    );
    let text = must(app, app.text(&e));
    eprintln!("app-e2e: {what}: {text}");
    text
}

/// Step 7: wrong password, unreachable server, untrusted and expired TLS certificates in the
/// account form's connection test; "trust this lab CA"; then the account signs in over TLS
/// while alice stays signed in.
fn failures(app: &DesktopSession, dir: &Path, shots: &Path, n: &mut u32) {
    let tls_lab_dir = dir.join("tls-lab");
    std::fs::create_dir_all(&tls_lab_dir).unwrap_or_else(|e| panic!("tls-lab folder: {e:?}"));
    let tls_lab = ok(LabServer::start(
        LabOptions {
            domain: "tls.lab".into(),
            tls: true,
            ..LabOptions::default()
        }
        .user("dana", "dana-secret"),
        &tls_lab_dir,
    ));
    let tls = tls_lab
        .addr(Transport::Tls)
        .unwrap_or_else(|| panic!("the TLS lab does not listen on TLS"));
    must(app, app.click_button("Calls", secs(5)));
    must(app, app.click_button("Add an account", secs(5)));
    must(
        app,
        app.fill("[data-testid=account-address]", "dana@tls.lab", secs(5)),
    );
    must(
        app,
        app.fill(
            "[data-testid=account-password]",
            "not-the-password",
            secs(5),
        ),
    );
    must(
        app,
        app.fill("[data-testid=account-proxy]", &tls.to_string(), secs(5)),
    );
    must(
        app,
        app.select("[data-testid=account-transport]", "tls", secs(5)),
    );

    // The lab's CA is not trusted: the certificate is shown with "trust this lab CA".
    let text = test_connection(app, "trust its lab CA", "untrusted lab certificate");
    assert!(text.contains("does not trust"), "{text}");
    must(
        app,
        app.wait_for("[data-testid=cert-details]", secs(5), |t| {
            t.contains("Tandem lab") && t.contains("SHA-256")
        })
        .map(|_| ()),
    );
    must(app, app.scroll_to("[data-testid=cert-details]", secs(5)));
    shot(app, shots, n, "tls-untrusted");
    must(app, app.click_button("Trust this lab CA", secs(5)));
    // Trusted, the same test now reaches the registrar, which refuses the password.
    let text = test_connection_after_trust(app);
    assert!(text.contains("refused the user name or password"), "{text}");
    must(app, app.scroll_to("[data-testid=test-failure]", secs(5)));
    shot(app, shots, n, "wrong-password");

    // Nothing listens on this TCP port: "cannot reach", at once.
    let closed =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("a free port: {e:?}"));
    let port = closed.local_addr().map(|a| a.port()).unwrap_or(1);
    drop(closed);
    must(
        app,
        app.fill(
            "[data-testid=account-proxy]",
            &format!("127.0.0.1:{port}"),
            secs(5),
        ),
    );
    must(
        app,
        app.select("[data-testid=account-transport]", "tcp", secs(5)),
    );
    let text = test_connection(app, "Cannot reach", "unreachable server");
    assert!(text.contains(&port.to_string()), "{text}");
    must(app, app.scroll_to("[data-testid=test-failure]", secs(5)));
    shot(app, shots, n, "unreachable");

    // An expired certificate: explained with its end date, no trust offered.
    let (cert, key) = expired_certificate(dir);
    let expired_port = tandem_tests::free_port();
    let mut expired = ok(tandem_tests::ChildGuard::spawn(
        "openssl-s_server-expired",
        {
            let mut c = Command::new("openssl");
            c.args(["s_server", "-quiet", "-accept"])
                .arg(format!("127.0.0.1:{expired_port}"))
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key);
            c
        },
        dir,
    ));
    wait_listening(expired_port);
    must(
        app,
        app.fill(
            "[data-testid=account-proxy]",
            &format!("127.0.0.1:{expired_port}"),
            secs(5),
        ),
    );
    must(
        app,
        app.select("[data-testid=account-transport]", "tls", secs(5)),
    );
    let text = test_connection(app, "expired on 2020-02-01", "expired certificate");
    assert!(text.contains("expired.tandem.test"), "{text}");
    assert!(
        app.find_all("[data-testid=trust-ca]")
            .unwrap_or_default()
            .is_empty(),
        "trust offered for an expired certificate"
    );
    must(app, app.scroll_to("[data-testid=cert-details]", secs(5)));
    shot(app, shots, n, "tls-expired");
    expired.stop();

    // Back to the TLS lab with the right password: it works, and the account signs in.
    must(
        app,
        app.fill("[data-testid=account-proxy]", &tls.to_string(), secs(5)),
    );
    must(
        app,
        app.fill("[data-testid=account-password]", "dana-secret", secs(5)),
    );
    test_connection(
        app,
        "Connection works",
        "the TLS lab with the right password",
    );
    must(app, app.click_button("Save and sign in", secs(5)));
    must(
        app,
        app.wait_for("[data-testid='reg-dana@tls.lab']", secs(20), |t| {
            t == "Signed in"
        })
        .map(|_| ()),
    );
    must(
        app,
        app.wait_for("[data-testid='reg-alice@tandem.lab']", secs(5), |t| {
            t == "Signed in"
        })
        .map(|_| ()),
    );
    shot(app, shots, n, "tls-signed-in");
    drop(tls_lab);
}

/// After "trust this lab CA" the form tests again by itself: waits for that result (not the
/// certificate failure shown before).
fn test_connection_after_trust(app: &DesktopSession) -> String {
    must(
        app,
        app.wait("[data-testid=trusted-ca]", secs(10)).map(|_| ()),
    );
    let e = must(
        app,
        app.wait_for("[data-testid=test-failure], form .ok", secs(20), |t| {
            !t.contains("trust its lab CA")
        }),
    );
    must(app, app.text(&e))
}

/// Waits (up to 10 s) until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
        // WebKitWebDriver may answer "stale element" while the page removes what matched: ask
        // again until the deadline.
        match app.find_all(css) {
            Ok(found) if found.is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => {}
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
