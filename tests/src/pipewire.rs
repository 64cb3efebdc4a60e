//! A private PipeWire session for camera tests: `dbus-daemon`, `pipewire` and `wireplumber` in a temporary
//! `XDG_RUNTIME_DIR`, and virtual cameras published into it by `gst-launch-1.0 … ! pipewiresink mode=provide`
//! (a `Video/Source` node that GStreamer's PipeWire device provider lists like a webcam).
//!
//! Machines without `/dev/video*` (CI, this one) still test real capture this way. Every process runs in its own
//! process group and is stopped when its guard is dropped (the session stops its daemons in reverse order).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, IoContext, Result};
use crate::process::ChildGuard;

/// How long each daemon gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running private PipeWire session (fields drop in order: wireplumber, pipewire, the bus).
pub struct PipewireSession {
    wireplumber: ChildGuard,
    pipewire: ChildGuard,
    dbus: ChildGuard,
    runtime_dir: PathBuf,
    log_dir: PathBuf,
}

/// Waits until `ready()` holds, failing early when `guard`'s process exits.
fn wait_until(guard: &mut ChildGuard, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = guard.try_status() {
            return Err(HarnessError::Exited {
                what: guard.name().to_string(),
                status,
                waiting_for: format!("{what}\n{}", guard.tails()),
            });
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(HarnessError::Timeout {
                what: format!("{what}\n{}", guard.tails()),
                waited: START_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl PipewireSession {
    /// Starts the bus, PipeWire and WirePlumber with their runtime directory and logs under `dir`; fails (with the
    /// daemons' logs) when one does not come up.
    pub fn start(dir: &Path) -> Result<Self> {
        let runtime_dir = dir.join("xdg-runtime");
        std::fs::create_dir_all(&runtime_dir)
            .ctx(|| format!("creating {}", runtime_dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))
                .ctx(|| format!("chmod 700 {}", runtime_dir.display()))?;
        }
        let bus = runtime_dir.join("bus");
        let mut dbus_cmd = Command::new("dbus-daemon");
        dbus_cmd.args([
            "--session".to_string(),
            format!("--address=unix:path={}", bus.display()),
            "--nofork".to_string(),
            "--nopidfile".to_string(),
        ]);
        let mut dbus = ChildGuard::spawn("dbus-daemon", dbus_cmd, dir)?;
        wait_until(&mut dbus, "the session bus socket", || bus.exists())?;
        let env = session_env(&runtime_dir);
        let mut pw_cmd = Command::new("pipewire");
        apply_env(&mut pw_cmd, &env);
        let mut pipewire = ChildGuard::spawn("pipewire", pw_cmd, dir)?;
        let socket = runtime_dir.join("pipewire-0");
        wait_until(&mut pipewire, "the pipewire-0 socket", || socket.exists())?;
        let mut wp_cmd = Command::new("wireplumber");
        apply_env(&mut wp_cmd, &env);
        let mut wireplumber = ChildGuard::spawn("wireplumber", wp_cmd, dir)?;
        let probe_env = env.clone();
        wait_until(&mut wireplumber, "WirePlumber to join the session", || {
            pw_cli(&probe_env, &["ls", "Client"])
                .is_ok_and(|out| out.to_ascii_lowercase().contains("wireplumber"))
        })?;
        Ok(PipewireSession {
            wireplumber,
            pipewire,
            dbus,
            runtime_dir,
            log_dir: dir.to_path_buf(),
        })
    }

    /// The environment a process needs to use this session (`XDG_RUNTIME_DIR`, `DBUS_SESSION_BUS_ADDRESS`).
    pub fn env(&self) -> Vec<(String, String)> {
        session_env(&self.runtime_dir)
    }

    /// Puts this session's environment on `command` (and removes variables pointing at another session).
    pub fn apply(&self, command: &mut Command) {
        apply_env(command, &self.env());
    }

    /// The names (`node.name`) of the session's `Video/Source` nodes.
    pub fn video_sources(&self) -> Result<Vec<String>> {
        let out = pw_cli(&self.env(), &["ls", "Node"])?;
        Ok(video_source_names(&out))
    }

    /// Publishes a virtual camera `name` playing the Y4M file `y4m` as I420 at the file's size and rate (the camera
    /// stops at the file's end); returns once the session lists its node.
    ///
    /// I420 as the file has it: PipeWire 0.3.65's `pipewiresink` crashes on buffers from a `videoconvert` before
    /// it ("invalid memory type 4", then SIGSEGV), so a converted (YUY2) stream comes from
    /// [`Self::publish_bars_camera`] instead.
    pub fn publish_y4m_camera(&self, name: &str, y4m: &Path) -> Result<VirtualCamera> {
        let mut cmd = Command::new("gst-launch-1.0");
        cmd.arg("-q")
            .arg("filesrc")
            .arg(format!("location={}", y4m.display()))
            .args(["!", "y4mdec"]);
        self.publish(name, cmd)
    }

    /// Publishes a virtual camera `name` showing `videotestsrc`'s live colour bars as YUY2 `width`x`height` at
    /// `fps` (the format most USB webcams deliver; no frame counter).
    pub fn publish_bars_camera(
        &self,
        name: &str,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<VirtualCamera> {
        let mut cmd = Command::new("gst-launch-1.0");
        cmd.args(["-q", "videotestsrc", "is-live=true", "!"])
            .arg(format!(
                "video/x-raw,format=YUY2,width={width},height={height},framerate={fps}/1"
            ));
        self.publish(name, cmd)
    }

    /// Ends `cmd` (a gst-launch-1.0 pipeline so far) with a providing `pipewiresink` named `name`, starts it and
    /// waits until the session lists its node.
    fn publish(&self, name: &str, mut cmd: Command) -> Result<VirtualCamera> {
        self.apply(&mut cmd);
        cmd.arg("!")
            .arg("pipewiresink")
            .arg("mode=provide")
            .arg(format!(
                "stream-properties=props,media.class=Video/Source,node.description={name}"
            ))
            .arg(format!("client-name={name}"));
        let mut guard = ChildGuard::spawn(&format!("camera-{name}"), cmd, &self.log_dir)?;
        wait_until(&mut guard, &format!("the camera node {name}"), || {
            self.video_sources()
                .is_ok_and(|names| names.iter().any(|n| n == name))
        })?;
        Ok(VirtualCamera {
            name: name.to_string(),
            guard,
        })
    }

    /// The daemons' process ids (bus, pipewire, wireplumber), for diagnostics.
    pub fn pids(&self) -> [u32; 3] {
        [self.dbus.pid(), self.pipewire.pid(), self.wireplumber.pid()]
    }
}

/// A virtual camera published into a [`PipewireSession`]; stopped (vanishes from the session) when dropped.
pub struct VirtualCamera {
    name: String,
    guard: ChildGuard,
}

impl VirtualCamera {
    /// Its node name and description (what camera lists show).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kills the publisher now, as a camera being unplugged.
    pub fn unplug(&mut self) {
        self.guard.signal(libc::SIGKILL);
        self.guard.stop();
    }

    /// Whether the publisher still runs.
    pub fn is_running(&mut self) -> bool {
        self.guard.is_running()
    }
}

fn session_env(runtime_dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "XDG_RUNTIME_DIR".to_string(),
            runtime_dir.display().to_string(),
        ),
        (
            "DBUS_SESSION_BUS_ADDRESS".to_string(),
            format!("unix:path={}", runtime_dir.join("bus").display()),
        ),
    ]
}

fn apply_env(command: &mut Command, env: &[(String, String)]) {
    for var in ["PIPEWIRE_REMOTE", "PIPEWIRE_RUNTIME_DIR", "PIPEWIRE_CORE"] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
}

/// Runs `pw-cli ARGS` in the session and returns its stdout.
fn pw_cli(env: &[(String, String)], args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("pw-cli");
    apply_env(&mut cmd, env);
    let out = cmd
        .args(args)
        .output()
        .ctx(|| format!("running pw-cli {}", args.join(" ")))?;
    if !out.status.success() {
        return Err(HarnessError::Tool {
            what: format!("pw-cli {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `node.name` of every node with `media.class = "Video/Source"` in `pw-cli ls Node` output.
fn video_source_names(listing: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut name: Option<String> = None;
    let mut video = false;
    let mut flush = |name: &mut Option<String>, video: &mut bool| {
        if let Some(n) = name.take()
            && *video
        {
            names.push(n);
        }
        *video = false;
    };
    for line in listing.lines() {
        let line = line.trim();
        if line.starts_with("id ") {
            flush(&mut name, &mut video);
        } else if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "node.name" => name = Some(value),
                "media.class" => video = value == "Video/Source",
                _ => {}
            }
        }
    }
    flush(&mut name, &mut video);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_sources_from_pw_cli() {
        let listing = r#"	id 28, type PipeWire:Interface:Node/3
 		object.serial = "28"
 		node.name = "Dummy-Driver"
	id 36, type PipeWire:Interface:Node/3
 		object.serial = "157"
 		node.description = "TandemTestCam"
 		node.name = "TandemTestCam"
 		media.class = "Video/Source"
	id 40, type PipeWire:Interface:Node/3
 		node.name = "mic"
 		media.class = "Audio/Source"
"#;
        assert_eq!(video_source_names(listing), vec!["TandemTestCam"]);
        assert!(video_source_names("").is_empty());
    }
}
