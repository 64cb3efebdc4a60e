//! The lab's click-to-call API (HTTPS, RFC 3725 third-party call control), driven with curl:
//! `POST /api/calls` rings `tandem-cli` (alice, auto-answer), then baresip (bob, auto-answer),
//! and bridges them: each records the other's tone. The call's JSON state and the server-sent
//! events follow it from `calling-from` to `ended`; `DELETE` hangs both up. Bad input: no or
//! wrong credentials (401), invalid JSON, fields or URIs (400), a wrong content type (415), a
//! user calling from someone else's address (403), unknown calls (404), an unreachable party
//! (`failed`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tandem_tests::process::{ChildGuard, Stream};
use tandem_tests::{
    Baresip, BaresipOptions, BaresipSource, CliAccount, LabOptions, LabServer, TestDir, Transport,
};

use crate::audio_baresip::baresip_recording;
use crate::audio_common::{
    SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, answer_args, assert_tone, assert_tone_after, tone_file,
};
use crate::common::{assert_exits_ok, ok, secs};

const TOKEN: &str = "api-test-token-0123456789";

fn lab(dir: &TestDir) -> LabServer {
    let opts = LabOptions {
        // baresip 1.0 (libre) knows only MD5 digest; curl --digest does too.
        auth_algorithms: vec!["MD5".into()],
        extra_toml: format!("\n[api]\nport = 0\ntokens = [\"{TOKEN}\"]\n"),
        ..LabOptions::default()
    }
    .user("alice", "alicepw")
    .user("bob", "bobpw");
    ok(LabServer::start(opts, dir.path()))
}

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Digest(&'a str, &'a str),
}

/// An HTTP answer: status and body.
struct Answer {
    status: u16,
    body: String,
    headers: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

struct Api {
    base: String,
    ca: String,
}

impl Api {
    fn new(lab: &LabServer) -> Api {
        let addr = lab
            .service("api")
            .unwrap_or_else(|| panic!("the ready line has api="));
        Api {
            base: format!("https://{addr}"),
            ca: lab.ca_cert().display().to_string(),
        }
    }

    fn curl_args(&self, auth: Auth<'_>) -> Vec<String> {
        let mut args = vec![
            "-sS".to_string(),
            "--max-time".into(),
            "20".into(),
            "--cacert".into(),
            self.ca.clone(),
        ];
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => args.extend(["-H".into(), format!("Authorization: Bearer {t}")]),
            Auth::Digest(u, p) => args.extend(["--digest".into(), "-u".into(), format!("{u}:{p}")]),
        }
        args
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<(&str, &str)>,
    ) -> Answer {
        let mut cmd = Command::new("curl");
        cmd.args(self.curl_args(auth))
            .args(["-X", method, "-D", "-", "-w", "\n%{http_code}"]);
        if let Some((content_type, data)) = body {
            cmd.args([
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                data,
            ]);
        }
        cmd.arg(format!("{}{path}", self.base));
        let out = cmd.output().unwrap_or_else(|e| panic!("running curl: {e}"));
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (rest, code) = text
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("curl -w output"));
        // With --digest, the headers of the 401 come first; keep the last response's.
        let last = rest.rfind("HTTP/").unwrap_or(0);
        let (headers, body) = rest[last..]
            .split_once("\r\n\r\n")
            .unwrap_or((&rest[last..], ""));
        Answer {
            status: code
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("status code {code:?}: {e}")),
            body: body.to_owned(),
            headers: headers.to_owned(),
        }
    }

    /// `curl -N` on the event stream, writing to `<dir>/events.txt`.
    fn events(&self, dir: &Path, auth: Auth<'_>) -> ChildGuard {
        let mut cmd = Command::new("curl");
        cmd.args(self.curl_args(auth))
            .args(["-N", "--max-time", "120"])
            .arg(format!("{}/api/events", self.base))
            .stdin(Stdio::null());
        ok(ChildGuard::spawn("curl-events", cmd, dir))
    }

    /// Polls the call until `pred` holds for its JSON.
    fn wait_call(
        &self,
        id: &str,
        auth: Auth<'_>,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + secs(30);
        loop {
            let a = self.request("GET", &format!("/api/calls/{id}"), auth, None);
            assert_eq!(a.status, 200, "{}", a.body);
            let v = a.json();
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "call never {what}: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// alice on tandem-cli, registered and auto-answering one call with a 440 Hz tone; returns it and the path of its
/// recording of what it hears.
fn alice_answering(lab: &LabServer, dir: &TestDir) -> (ChildGuard, PathBuf) {
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", lab.udp(), Transport::Udp);
    let alice_tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let alice_rec = dir.path().join("alice-heard.wav");
    let alice_rec_arg = alice_rec.display().to_string();
    let mut a = ok(alice.spawn(
        "cli-alice",
        &answer_args(&alice_tone, &alice_rec_arg, &[]),
        dir.path(),
    ));
    ok(a.wait_for_line(Stream::Stdout, "registered", secs(10)));
    (a, alice_rec)
}

/// bob on baresip, registered and auto-answering with a 1250 Hz tone, recording what it decodes.
fn bob_answering(lab: &LabServer, dir: &TestDir) -> Baresip {
    let mut opts = BaresipOptions::new("bob", "127.0.0.1", "bobpw", lab.udp());
    opts.auto_answer = true;
    opts.source = BaresipSource::File(tone_file(dir.path(), TONE_CALLEE));
    opts.record = true;
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));
    bob
}

#[test]
fn click_to_call_bridges_cli_and_baresip() {
    let dir = ok(TestDir::new("mediasrv-api-call"));
    let mut lab = lab(&dir);
    let api = Api::new(&lab);

    // alice: tandem-cli, auto-answering with a 440 Hz tone, recording what it hears.
    let (mut a, alice_rec) = alice_answering(&lab, &dir);

    // bob: baresip, auto-answering with a 1250 Hz tone, recording what it decodes.
    let mut bob = bob_answering(&lab, &dir);

    let mut events = api.events(dir.path(), Auth::Bearer(TOKEN));
    std::thread::sleep(secs(1));

    // alice clicks "call bob" with her own credentials.
    let created = api.request(
        "POST",
        "/api/calls",
        Auth::Digest("alice", "alicepw"),
        Some((
            "application/json",
            r#"{"from": "alice", "to": "sip:bob@127.0.0.1"}"#,
        )),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(
        created
            .headers
            .to_ascii_lowercase()
            .contains("location: /api/calls/"),
        "{}",
        created.headers
    );
    let call = created.json();
    let id = call["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id"))
        .to_owned();
    assert_eq!(call["from"], "sip:alice@127.0.0.1");
    assert_eq!(call["to"], "sip:bob@127.0.0.1");

    // alice's phone rings first (the INVITE without an offer), then bob's.
    let incoming = ok(a.wait_for_line(Stream::Stdout, "incoming", secs(10)));
    assert!(incoming.contains("from="), "{incoming}");
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(15)));
    // alice's 200 carried the offer; the ACK with bob's answer completes her call.
    ok(a.wait_for_line(Stream::Stdout, "answered", secs(10)));
    let connected = api.wait_call(&id, Auth::Digest("alice", "alicepw"), "connected", |v| {
        v["state"] == "connected"
    });
    assert_eq!(connected["from_status"], 200);
    assert_eq!(connected["to_status"], 200);

    // The operator sees it too; another user does not.
    let list = api.request("GET", "/api/calls", Auth::Bearer(TOKEN), None);
    assert_eq!(list.status, 200);
    assert!(
        list.json()
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["id"] == id.as_str()))
    );
    let hidden = api.request(
        "GET",
        &format!("/api/calls/{id}"),
        Auth::Digest("bob", "bobpw"),
        None,
    );
    assert_eq!(hidden.status, 404, "{}", hidden.body);

    // Let audio flow both ways, then hang up through the API.
    std::thread::sleep(secs(5));
    let deleted = api.request(
        "DELETE",
        &format!("/api/calls/{id}"),
        Auth::Bearer(TOKEN),
        None,
    );
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    let ended = ok(a.wait_for_line(Stream::Stdout, "ended", secs(15)));
    assert!(ended.contains("by=remote"), "{ended}");
    ok(bob.wait_event_type("CALL_CLOSED", secs(15)));
    let done = api.wait_call(&id, Auth::Bearer(TOKEN), "ended", |v| v["state"] == "ended");
    assert_eq!(done["reason"], "hung up through the API");
    assert_exits_ok(&mut a, secs(15), "a");

    // Audio both ways: each side hears the other's tone.
    assert_tone(
        &alice_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(1),
        "alice hears bob",
    );
    let bob_rec = baresip_recording(&bob, 1);
    assert_tone(
        &bob_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(1),
        "bob hears alice",
    );

    // The event stream told the whole story, in order.
    std::thread::sleep(secs(1));
    events.stop();
    let text = events.stdout();
    let states: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|v| v["id"] == id.as_str())
        .filter_map(|v| v["state"].as_str().map(str::to_owned))
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    for s in &states {
        if seen.last() != Some(&s.as_str()) {
            seen.push(s);
        }
    }
    assert_eq!(
        seen,
        ["calling-from", "calling-to", "connected", "ended"],
        "{text}"
    );
    assert!(text.contains("event: call"), "{text}");
    assert!(lab.is_running());
}

#[test]
fn bad_requests_get_clear_errors() {
    let dir = ok(TestDir::new("mediasrv-api-bad"));
    let mut lab = lab(&dir);
    let api = Api::new(&lab);
    let call_json = r#"{"from":"alice","to":"bob"}"#;

    // No credentials, a wrong token, a wrong password: 401 with a JSON error and a challenge.
    for auth in [
        Auth::None,
        Auth::Bearer("not-the-token-000000"),
        Auth::Digest("alice", "wrong"),
    ] {
        let a = api.request(
            "POST",
            "/api/calls",
            auth,
            Some(("application/json", call_json)),
        );
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.json()["error"].is_string(), "{}", a.body);
        assert!(
            a.headers
                .to_ascii_lowercase()
                .contains("www-authenticate: digest"),
            "{}",
            a.headers
        );
    }
    let a = api.request("GET", "/api/events", Auth::None, None);
    assert_eq!(a.status, 401);

    let bearer = Auth::Bearer(TOKEN);
    let cases: [(&str, &str, u16); 8] = [
        ("application/json", "{not json", 400),
        ("application/json", r#"{"from":"alice"}"#, 400),
        (
            "application/json",
            r#"{"from":"alice","to":"bob","x":1}"#,
            400,
        ),
        ("application/json", r#"{"from":"a b","to":"bob"}"#, 400),
        ("application/json", r#"{"from":"sip:","to":"bob"}"#, 400),
        (
            "application/json",
            r#"{"from":"mailto:x@y","to":"bob"}"#,
            400,
        ),
        ("application/json", r#"{"from":"","to":"bob"}"#, 400),
        ("text/plain", call_json, 415),
    ];
    for (content_type, body, status) in cases {
        let a = api.request("POST", "/api/calls", bearer, Some((content_type, body)));
        assert_eq!(a.status, status, "{body}: {}", a.body);
        assert!(a.json()["error"].is_string(), "{}", a.body);
    }
    let a = api.request(
        "POST",
        "/api/conferences",
        bearer,
        Some(("application/json", r#"{"participants":[]}"#)),
    );
    assert_eq!(a.status, 400, "{}", a.body);

    // A user places calls from their own address only.
    let a = api.request(
        "POST",
        "/api/calls",
        Auth::Digest("alice", "alicepw"),
        Some(("application/json", r#"{"from":"bob","to":"alice"}"#)),
    );
    assert_eq!(a.status, 403, "{}", a.body);

    let a = api.request("GET", "/api/calls/0000000000000000", bearer, None);
    assert_eq!(a.status, 404);
    let a = api.request("DELETE", "/api/calls/0000000000000000", bearer, None);
    assert_eq!(a.status, 404);
    let a = api.request("GET", "/api/nothing", bearer, None);
    assert_eq!(a.status, 404);

    // A party that does not exist: the call fails with the proxy's status.
    let a = api.request(
        "POST",
        "/api/calls",
        bearer,
        Some(("application/json", r#"{"from":"nobody","to":"alice"}"#)),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id"))
        .to_owned();
    let failed = api.wait_call(&id, bearer, "failed", |v| v["state"] == "failed");
    assert!(
        failed["from_status"].as_u64().is_some_and(|s| s >= 400),
        "{failed}"
    );
    assert!(failed["reason"].is_string(), "{failed}");

    // B does not exist: A (who answered with an offer) gets an ACK refusing it, then a BYE.
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", lab.udp(), Transport::Udp);
    let mut a = ok(alice.spawn("cli-alice", &["answer", "--count", "1"], dir.path()));
    ok(a.wait_for_line(Stream::Stdout, "registered", secs(10)));
    let created = api.request(
        "POST",
        "/api/calls",
        Auth::Digest("alice", "alicepw"),
        Some(("application/json", r#"{"from":"alice","to":"nobody"}"#)),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id"))
        .to_owned();
    let failed = api.wait_call(&id, bearer, "failed", |v| v["state"] == "failed");
    assert_eq!(failed["from_status"], 200, "{failed}");
    assert_eq!(failed["to_status"], 404, "{failed}");
    ok(a.wait_for_line(Stream::Stdout, "incoming", secs(10)));
    ok(a.wait_for_line(Stream::Stdout, "ended", secs(15)));
    let _ = a.wait_exit(secs(15));
    assert!(lab.is_running());
}

#[test]
fn api_conference_dials_everyone_into_a_fresh_room() {
    let dir = ok(TestDir::new("mediasrv-api-conf"));
    let opts = LabOptions {
        auth_algorithms: vec!["MD5".into()],
        extra_toml: format!(
            "\n[api]\nport = 0\ntokens = [\"{TOKEN}\"]\n\n[conference]\ntones = false\n"
        ),
        ..LabOptions::default()
    }
    .user("alice", "alicepw")
    .user("bob", "bobpw");
    let mut lab = ok(LabServer::start(opts, dir.path()));
    let api = Api::new(&lab);

    let (mut a, alice_rec) = alice_answering(&lab, &dir);
    let mut bob = bob_answering(&lab, &dir);

    // alice starts a conference with bob (a user must take part in it).
    let created = api.request(
        "POST",
        "/api/conferences",
        Auth::Digest("alice", "alicepw"),
        Some((
            "application/json",
            r#"{"participants": ["alice", "sip:bob@127.0.0.1"]}"#,
        )),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let conf = created.json();
    let conf_id = conf["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id"))
        .to_owned();
    let room = conf["uri"].as_str().unwrap_or_default().to_owned();
    assert!(room.starts_with("sip:conf-api-"), "{conf}");
    let calls: Vec<String> = conf["calls"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(calls.len(), 2, "{conf}");

    ok(a.wait_for_line(Stream::Stdout, "answered", secs(15)));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(15)));
    for id in &calls {
        api.wait_call(id, Auth::Bearer(TOKEN), "connected", |v| {
            v["state"] == "connected" && v["to"] == room.as_str()
        });
    }
    let got = api.request(
        "GET",
        &format!("/api/conferences/{conf_id}"),
        Auth::Digest("alice", "alicepw"),
        None,
    );
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["calls"].as_array().map(Vec::len), Some(2));
    let hidden = api.request(
        "GET",
        &format!("/api/conferences/{conf_id}"),
        Auth::Digest("bob", "bobpw"),
        None,
    );
    assert_eq!(hidden.status, 404);

    std::thread::sleep(secs(6));
    for id in &calls {
        let d = api.request(
            "DELETE",
            &format!("/api/calls/{id}"),
            Auth::Bearer(TOKEN),
            None,
        );
        assert_eq!(d.status, 202, "{}", d.body);
    }
    ok(a.wait_for_line(Stream::Stdout, "ended", secs(15)));
    ok(bob.wait_event_type("CALL_CLOSED", secs(15)));
    assert_exits_ok(&mut a, secs(15), "a");

    // Mix-minus through the room: each hears the other, not itself.
    assert_tone_after(
        &alice_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(3),
        0.6,
        secs(2),
        "alice hears bob through the room",
    );
    let bob_rec = baresip_recording(&bob, 1);
    assert_tone_after(
        &bob_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(3),
        0.6,
        secs(2),
        "bob hears alice through the room",
    );
    assert!(lab.is_running());
}
