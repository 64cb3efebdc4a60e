//! The desktop app under Xvfb driven by WebKitWebDriver (W3C WebDriver over HTTP).
//!
//! [`DesktopSession::start`] starts a private X server (`Xvfb` on a free display), then
//! `WebKitWebDriver` on a free port, and opens a WebDriver session whose
//! `webkitgtk:browserOptions.binary` is the built `tandem` binary: WebKitWebDriver launches the
//! app itself (what `tauri-driver` does on Linux, without the extra proxy), with
//! `TAURI_WEBVIEW_AUTOMATION=true` so that Tauri's webview accepts automation. The app gets
//! its own `HOME`/`XDG_*` folders, keyring service and audio devices from the test.
//!
//! The WebDriver client is a small blocking HTTP/1.1 client over `TcpStream` (loopback only):
//! find elements by CSS, click, type, read text and attributes, run scripts, take PNG
//! screenshots. Every process is in its own process group and stopped on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{HarnessError, IoContext, Result};
use crate::paths::bin_path;
use crate::ports::free_port;
use crate::process::ChildGuard;

/// The W3C element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Largest WebDriver response accepted (screenshots are the big ones).
const MAX_RESPONSE: usize = 64 << 20;
/// How long one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// An element as a script argument (a W3C web element reference).
fn element_ref(e: &Element) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(ELEMENT_KEY.to_owned(), Value::String(e.0.clone()));
    Value::Object(map)
}

fn protocol(detail: impl Into<String>) -> HarnessError {
    HarnessError::Protocol {
        what: "WebKitWebDriver".into(),
        detail: detail.into(),
    }
}

/// A private X server on a free display, stopped on drop.
pub struct Xvfb {
    child: ChildGuard,
    display: u32,
}

impl Xvfb {
    /// Starts `Xvfb :N -screen 0 WxHx24` on the first free display from 90 on; logs go to `dir`.
    pub fn start(dir: &Path, width: u32, height: u32) -> Result<Xvfb> {
        let first = 90 + std::process::id() % 200;
        for display in first..first + 40 {
            if Path::new(&format!("/tmp/.X{display}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{display}")).exists()
            {
                continue;
            }
            let mut c = Command::new("Xvfb");
            c.arg(format!(":{display}"))
                .args(["-screen", "0", &format!("{width}x{height}x24")])
                .args(["-nolisten", "tcp", "-noreset"]);
            let mut child = ChildGuard::spawn(&format!("xvfb-{display}"), c, dir)?;
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{display}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.is_running() && !socket.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
            if socket.exists() && child.is_running() {
                return Ok(Xvfb { child, display });
            }
            child.stop();
        }
        Err(HarnessError::Tool {
            what: "Xvfb".into(),
            detail: "no free X display between :90 and :330".into(),
        })
    }

    /// The `DISPLAY` value (`:N`).
    pub fn display(&self) -> String {
        format!(":{}", self.display)
    }

    /// The X server's log tails, for failure reports.
    pub fn tails(&self) -> String {
        self.child.tails()
    }
}

/// How to start the desktop app.
#[derive(Debug, Clone)]
pub struct DesktopOptions {
    /// The app binary (default: the built `tandem`).
    pub binary: Option<PathBuf>,
    /// Extra environment variables of the app (`TANDEM_CAPTURE`, …).
    pub env: Vec<(String, String)>,
    /// Screen size of the X server.
    pub screen: (u32, u32),
}

impl Default for DesktopOptions {
    fn default() -> Self {
        DesktopOptions {
            binary: None,
            env: Vec::new(),
            screen: (1280, 900),
        }
    }
}

/// A found element (its WebDriver reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(pub String);

/// The desktop app running under Xvfb with a WebDriver session; everything stops on drop.
pub struct DesktopSession {
    driver: ChildGuard,
    xvfb: Xvfb,
    /// The private D-Bus session bus (single-instance and notifications talk over it).
    bus: ChildGuard,
    addr: SocketAddr,
    session: Option<String>,
    home: PathBuf,
    /// The app binary and the environment it was started with (for a second launch).
    binary: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl DesktopSession {
    /// Starts Xvfb, WebKitWebDriver and the app (with its home in `dir/home`).
    pub fn start(dir: &Path, options: DesktopOptions) -> Result<DesktopSession> {
        let binary = match options.binary {
            Some(b) => b,
            None => bin_path("tandem")?,
        };
        let xvfb = Xvfb::start(dir, options.screen.0, options.screen.1)?;
        let home = dir.join("home");
        for sub in [".local/share", ".config", ".cache", "runtime"] {
            std::fs::create_dir_all(home.join(sub))
                .ctx(|| format!("creating {}", home.join(sub).display()))?;
        }
        let runtime = home.join("runtime");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))
                .ctx(|| "chmod runtime dir".into())?;
        }
        // A session bus of its own, as a desktop session has: the app's single-instance guard
        // lives on it.
        let bus_path = runtime.join("bus");
        let bus_address = format!("unix:path={}", bus_path.display());
        // No service activation: nothing (portals, the accessibility bus) is started behind the
        // test's back; the app's own names are all it needs.
        let bus_config = runtime.join("bus.conf");
        std::fs::write(
            &bus_config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>{bus_address}</listen>\
                 <auth>EXTERNAL</auth><policy context=\"default\">\
                 <allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>\
                 <allow own=\"*\"/></policy></busconfig>\n"
            ),
        )
        .ctx(|| format!("writing {}", bus_config.display()))?;
        let mut b = Command::new("dbus-daemon");
        b.args(["--nofork", "--nopidfile"])
            .arg(format!("--config-file={}", bus_config.display()));
        let mut bus = ChildGuard::spawn("dbus-session", b, dir)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !bus_path.exists() {
            if Instant::now() > deadline || !bus.is_running() {
                return Err(HarnessError::Timeout {
                    what: format!("dbus-daemon at {bus_address}\n{}", bus.tails()),
                    waited: Duration::from_secs(10),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut env: Vec<(String, String)> = vec![
            ("DISPLAY".into(), xvfb.display()),
            ("HOME".into(), home.display().to_string()),
            (
                "XDG_DATA_HOME".into(),
                home.join(".local/share").display().to_string(),
            ),
            (
                "XDG_CONFIG_HOME".into(),
                home.join(".config").display().to_string(),
            ),
            (
                "XDG_CACHE_HOME".into(),
                home.join(".cache").display().to_string(),
            ),
            ("XDG_RUNTIME_DIR".into(), runtime.display().to_string()),
            ("DBUS_SESSION_BUS_ADDRESS".into(), bus_address),
            ("TAURI_WEBVIEW_AUTOMATION".into(), "true".into()),
            ("TAURI_AUTOMATION".into(), "true".into()),
            ("NO_AT_BRIDGE".into(), "1".into()),
            ("GDK_BACKEND".into(), "x11".into()),
        ];
        env.extend(options.env.iter().cloned());
        let port = free_port();
        // A session keyring of its own (keyctl, package keyutils): the app keeps passwords in
        // the kernel keyring, which needs a session keyring to link into.
        let mut c = Command::new("keyctl");
        c.args(["session", "-", "WebKitWebDriver"])
            .arg(format!("--port={port}"))
            .env_remove("WAYLAND_DISPLAY");
        for (k, v) in &env {
            c.env(k, v);
        }
        let driver = ChildGuard::spawn("webkitwebdriver", c, dir)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = DesktopSession {
            driver,
            xvfb,
            bus,
            addr,
            session: None,
            home,
            binary: binary.clone(),
            env,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if s.request("GET", "/status", None).is_ok() {
                break;
            }
            if Instant::now() > deadline || !s.driver.is_running() {
                return Err(HarnessError::Timeout {
                    what: format!("WebKitWebDriver on {addr}\n{}", s.driver.tails()),
                    waited: Duration::from_secs(15),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "webkitgtk:browserOptions": {
                        "binary": binary.display().to_string(),
                        "args": [],
                    }
                }
            }
        });
        let created = s.request("POST", "/session", Some(&caps))?;
        let id = created
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol(format!("no sessionId in {created}")))?;
        s.session = Some(id.to_owned());
        Ok(s)
    }

    /// Launches the app binary a second time in the same desktop session with `args` (as a
    /// browser does for a `sip:` link) and waits for it to exit: the running instance takes
    /// over. An error if it is still running after `timeout` (it is then stopped).
    pub fn launch_again(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<std::process::ExitStatus> {
        let mut c = Command::new("keyctl");
        c.args(["session", "-"]).arg(&self.binary).args(args);
        c.env_remove("WAYLAND_DISPLAY");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let mut second = ChildGuard::spawn("tandem-second", c, &self.dir)?;
        match second.wait_exit(timeout) {
            Ok(status) => Ok(status),
            Err(e) => {
                second.stop();
                Err(HarnessError::Protocol {
                    what: "the second launch of the app".into(),
                    detail: format!(
                        "it did not hand over to the running instance: {e}\n{}",
                        second.tails()
                    ),
                })
            }
        }
    }

    /// How many windows the WebDriver session sees.
    pub fn window_count(&self) -> Result<usize> {
        let handles = self.request("GET", &self.session_path("/window/handles")?, None)?;
        handles
            .as_array()
            .map(Vec::len)
            .ok_or_else(|| protocol(format!("window handles: {handles}")))
    }

    /// The app's home folder (its data is under `.local/share/org.tandem.app`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The app's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.home.join(".local/share/org.tandem.app")
    }

    /// The proportional set size (PSS, KiB) of the app and every process it started (the WebKit
    /// web and network processes), summed from `/proc/PID/smaps_rollup`: the memory the running
    /// app costs. The driver itself is not counted.
    pub fn app_pss_kib(&self) -> Result<u64> {
        let driver = self.driver.pid();
        let mut parents: Vec<(u32, u32, String)> = Vec::new();
        let entries = std::fs::read_dir("/proc").ctx(|| "reading /proc".into())?;
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`; comm may contain spaces, so split after the last ')'.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0);
            parents.push((pid, ppid, comm.to_owned()));
        }
        // The driver runs under `keyctl session -`, which execs or forks it: start from every
        // descendant of the driver's process group leader and skip WebKitWebDriver itself.
        let mut tree = vec![driver];
        let mut i = 0;
        while let Some(&p) = tree.get(i) {
            for (pid, ppid, _) in &parents {
                if *ppid == p && !tree.contains(pid) {
                    tree.push(*pid);
                }
            }
            i += 1;
        }
        let mut total = 0;
        for (pid, _, comm) in parents.iter().filter(|(pid, ..)| tree.contains(pid)) {
            if comm == "WebKitWebDriver" || comm == "keyctl" {
                continue;
            }
            let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
                continue;
            };
            total += rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// The logs of Xvfb and WebKitWebDriver (which include the app's stderr).
    pub fn tails(&self) -> String {
        format!("{}\n{}", self.driver.tails(), self.xvfb.tails())
    }

    fn session_path(&self, rest: &str) -> Result<String> {
        let id = self
            .session
            .as_deref()
            .ok_or_else(|| protocol("no session"))?;
        Ok(format!("/session/{id}{rest}"))
    }

    /// One WebDriver command; the `value` of the answer, or the WebDriver error as `Protocol`.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, text) = http(self.addr, method, path, body)?;
        let parsed: Value = serde_json::from_str(&text)
            .map_err(|e| protocol(format!("{method} {path}: HTTP {status}, not JSON ({e})")))?;
        let value = parsed.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 {
            return Err(protocol(format!("{method} {path}: HTTP {status}: {value}")));
        }
        Ok(value)
    }

    fn session_request(&self, method: &str, rest: &str, body: Option<&Value>) -> Result<Value> {
        let path = self.session_path(rest)?;
        self.request(method, &path, body)
    }

    /// Every element matching the CSS selector.
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.session_request(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get(ELEMENT_KEY).and_then(Value::as_str))
                    .map(|s| Element(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits up to `timeout` for an element matching `css` whose text satisfies `pred`.
    pub fn wait_for(
        &self,
        css: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<Element> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            for e in self.find_all(css)? {
                if let Ok(text) = self.text(&e) {
                    if pred(&text) {
                        return Ok(e);
                    }
                    last = text;
                }
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout {
                    what: format!("element {css} (last text {last:?})"),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits for an element matching `css`.
    pub fn wait(&self, css: &str, timeout: Duration) -> Result<Element> {
        self.wait_for(css, timeout, |_| true)
    }

    /// Waits for a button whose visible text contains `label` (case-sensitive) and clicks it.
    pub fn click_button(&self, label: &str, timeout: Duration) -> Result<()> {
        let e = self.wait_for("button", timeout, |t| t.contains(label))?;
        self.click(&e)
    }

    /// Clicks an element.
    pub fn click(&self, e: &Element) -> Result<()> {
        self.session_request("POST", &format!("/element/{}/click", e.0), Some(&json!({})))?;
        Ok(())
    }

    /// Types `text` into an element (`\n` presses Enter).
    pub fn type_text(&self, e: &Element, text: &str) -> Result<()> {
        let text = text.replace('\n', "\u{E007}");
        self.session_request(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(&json!({"text": text})),
        )?;
        Ok(())
    }

    /// Empties a text field (W3C Element Clear), as a user selecting and deleting its text.
    pub fn clear(&self, e: &Element) -> Result<()> {
        self.session_request("POST", &format!("/element/{}/clear", e.0), Some(&json!({})))?;
        Ok(())
    }

    /// Replaces the text of the field matching `css` with `text` (clear, then type).
    pub fn fill(&self, css: &str, text: &str, timeout: Duration) -> Result<()> {
        let e = self.wait(css, timeout)?;
        self.clear(&e)?;
        if !text.is_empty() {
            self.type_text(&e, text)?;
        }
        Ok(())
    }

    /// Picks the option with `value` in the `<select>` matching `css` (and tells the page, as a
    /// user's choice would, with `input` and `change` events).
    pub fn select(&self, css: &str, value: &str, timeout: Duration) -> Result<()> {
        let e = self.wait(css, timeout)?;
        let done = self.execute(
            "const s = arguments[0]; \
             if (![...s.options].some(o => o.value === arguments[1])) return false; \
             s.value = arguments[1]; \
             s.dispatchEvent(new Event('input', { bubbles: true })); \
             s.dispatchEvent(new Event('change', { bubbles: true })); \
             return true;",
            vec![element_ref(&e), json!(value)],
        )?;
        if done != Value::Bool(true) {
            return Err(protocol(format!("{css} has no option {value:?}")));
        }
        Ok(())
    }

    /// Hands a file with `name` and `contents` to the `<input type=file>` matching `css`, the
    /// way a file picker does (a `change` event with the file in `files`).
    pub fn pick_file(
        &self,
        css: &str,
        name: &str,
        contents: &[u8],
        timeout: Duration,
    ) -> Result<()> {
        let e = self.wait(css, timeout)?;
        let bytes: Vec<Value> = contents.iter().map(|b| json!(b)).collect();
        self.execute(
            "const dt = new DataTransfer(); \
             dt.items.add(new File([new Uint8Array(arguments[2])], arguments[1])); \
             arguments[0].files = dt.files; \
             arguments[0].dispatchEvent(new Event('change', { bubbles: true }));",
            vec![element_ref(&e), json!(name), Value::Array(bytes)],
        )?;
        Ok(())
    }

    /// Scrolls the element matching `css` to the middle of the window (for screenshots).
    pub fn scroll_to(&self, css: &str, timeout: Duration) -> Result<()> {
        let e = self.wait(css, timeout)?;
        self.execute(
            "arguments[0].scrollIntoView({ block: 'center' });",
            vec![element_ref(&e)],
        )?;
        Ok(())
    }

    /// The rendered text of an element.
    pub fn text(&self, e: &Element) -> Result<String> {
        let v = self.session_request("GET", &format!("/element/{}/text", e.0), None)?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// An attribute of an element.
    pub fn attribute(&self, e: &Element, name: &str) -> Result<Option<String>> {
        let v = self.session_request("GET", &format!("/element/{}/attribute/{name}", e.0), None)?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its value.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.session_request(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// Saves a PNG screenshot of the window to `path` (folders created).
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        // Let the page paint what the DOM already holds (two animation frames), so the picture
        // shows the state the test just checked.
        self.session_request(
            "POST",
            "/execute/async",
            Some(&json!({
                "script": "const done = arguments[arguments.length - 1]; \
                           requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
                "args": [],
            })),
        )?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        // The X server's pixels of the window, as the user sees them. (WebKitWebDriver's own
        // screenshot never answers when WebKit draws without accelerated compositing, which
        // the app chooses on machines without a GPU.)
        let rect = self.session_request("GET", "/window/rect", None)?;
        let dim = |k: &str| rect.get(k).and_then(Value::as_i64).unwrap_or(0).max(0);
        let (x, y, w, h) = (dim("x"), dim("y"), dim("width"), dim("height"));
        if w == 0 || h == 0 {
            return Err(protocol(format!("window rect {rect}")));
        }
        let mut c = Command::new("gst-launch-1.0");
        c.arg("-q")
            .arg("ximagesrc")
            .arg(format!("display-name={}", self.xvfb.display()))
            .args(["use-damage=false", "show-pointer=false", "num-buffers=1"])
            .arg(format!("startx={x}"))
            .arg(format!("starty={y}"))
            .arg(format!("endx={}", x + w - 1))
            .arg(format!("endy={}", y + h - 1))
            .args(["!", "videoconvert", "!", "pngenc", "!", "filesink"])
            .arg(format!("location={}", path.display()));
        let out = c
            .output()
            .ctx(|| "gst-launch-1.0 ximagesrc (package gstreamer1.0-tools)".into())?;
        let png = std::fs::read(path).unwrap_or_default();
        if !out.status.success() || png.get(1..4) != Some(b"PNG") {
            return Err(protocol(format!(
                "screen grab of the window failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Ends the session (the driver closes the app).
    pub fn close(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = http(self.addr, "DELETE", &format!("/session/{id}"), None);
        }
    }
}

impl Drop for DesktopSession {
    fn drop(&mut self) {
        self.close();
        self.driver.stop();
        self.bus.stop();
    }
}

/// One HTTP/1.1 request to `addr` (Connection: close); the status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
    let what = || format!("WebDriver {method} {path}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ctx(what)?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT)).ctx(what)?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT)).ctx(what)?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if body.is_some() {
        head.push_str("Content-Type: application/json; charset=utf-8\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    stream.write_all(head.as_bytes()).ctx(what)?;
    stream.write_all(payload.as_bytes()).ctx(what)?;
    // Read until the response is complete by its own framing (Content-Length or the last
    // chunk): a keep-alive server may leave the connection open after answering.
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(done) = complete(&raw) {
            raw.truncate(done);
            break;
        }
        if raw.len() > MAX_RESPONSE {
            return Err(protocol(format!("{}: response too large", what())));
        }
        let n = stream.read(&mut buf).ctx(what)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| protocol(format!("{}: no header end", what())))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol(format!("{}: bad status line", what())))?;
    if is_chunked(&head) {
        body = dechunk(&body).ok_or_else(|| protocol(format!("{}: bad chunked body", what())))?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn is_chunked(head: &str) -> bool {
    head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    })
}

/// The length of the whole response in `raw` once it is complete, by its framing.
fn complete(raw: &[u8]) -> Option<usize> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(raw.get(..split)?).to_ascii_lowercase();
    let body = raw.get(split + 4..)?;
    if is_chunked(&head) {
        let end = body.windows(5).position(|w| w == b"0\r\n\r\n")?;
        // Only a last chunk at a chunk boundary ends the body.
        return dechunk(body.get(..end + 5)?).map(|_| split + 4 + end + 5);
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())?;
    (body.len() >= length).then_some(split + 4 + length)
}

/// Decodes a chunked transfer-encoded body.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(data.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = data.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n").as_deref(),
            Some(&b"hello world"[..])
        );
        assert_eq!(dechunk(b"5\r\nhel"), None);
    }
}
