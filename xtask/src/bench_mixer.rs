//! `cargo xtask bench mixer [--secs N]`: the conference mixer's capacity, from the media crate's `mixer` bench.
//!
//! The bench (`media/benches/mixer.rs`) is built first (not timed), then run with `TANDEM_BENCH_SECS=N` (default 4)
//! under a deadline. It measures, for G.711 (PCMU) and Opus legs: the participants one core mixes per 20 ms tick
//! (each participant's jitter buffer + decode, resampling into the 48 kHz mix and back, mix-minus, encode), a
//! real-time run at half that load checking the 20 ms deadline (mixer clock thread + the legs' thread), and
//! voicemail recordings (receive chain + Ogg Opus file) one core keeps up with.
//!
//! There is no reference conference mixer to compare with in the same run: Debian's baresip 1.0 ships no mixing
//! module (no `mixminus`/`conference`). The report is printed and written to
//! `<target>/bench-mixer/report.{json,md}`.

use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::cmd::{cargo, stop_group, target_dir};

/// Default seconds per measurement.
const DEFAULT_SECS: u64 = 4;
/// Longest allowed `--secs`.
const MAX_SECS: u64 = 30;

/// The 1-minute load average (`-` when unreadable).
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "-".into())
}

/// Parses one `name key=value ...` line into (name, fields).
fn parse_line(line: &str) -> Option<(String, Map<String, Value>)> {
    let mut parts = line.split_whitespace();
    let name = parts.next()?.to_string();
    let mut fields = Map::new();
    for p in parts {
        let (k, v) = p.split_once('=')?;
        let value = v
            .parse::<f64>()
            .map(|n| json!(n))
            .unwrap_or_else(|_| json!(v));
        fields.insert(k.to_string(), value);
    }
    Some((name, fields))
}

/// `cargo xtask bench mixer`.
pub fn mixer(args: &[String]) -> Result<()> {
    let mut secs = DEFAULT_SECS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => {
                secs = it
                    .next()
                    .context("--secs needs a value")?
                    .parse()
                    .context("--secs takes whole seconds")?;
                if secs == 0 || secs > MAX_SECS {
                    bail!("--secs must be 1..={MAX_SECS}");
                }
            }
            other => bail!("unknown option `{other}` (usage: cargo xtask bench mixer [--secs N])"),
        }
    }
    let status = cargo(&[
        "bench",
        "-p",
        "tandem-media",
        "--bench",
        "mixer",
        "--no-run",
    ])
    .status()
    .context("building the mixer bench")?;
    if !status.success() {
        bail!("building the mixer bench failed ({status})");
    }
    let mut cmd = cargo(&["bench", "-p", "tandem-media", "--bench", "mixer"]);
    cmd.env("TANDEM_BENCH_SECS", secs.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    let load_before = loadavg();
    let mut child = cmd.spawn().context("starting the mixer bench")?;
    let mut stdout = child.stdout.take().context("bench stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    // Six measurements of `secs` each (real-time runs last `secs`), plus set-up.
    let deadline = Instant::now() + Duration::from_secs(secs * 8 + 120);
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the bench")? {
            break status;
        }
        if Instant::now() > deadline {
            stop_group(&mut child);
            bail!("the mixer bench did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("the mixer bench failed ({status})\n{out}");
    }
    let rows: Vec<(String, Map<String, Value>)> = out.lines().filter_map(parse_line).collect();
    if rows.is_empty() {
        bail!("the mixer bench printed no measurements:\n{out}");
    }
    let mut md = String::from("# Conference mixer\n\n");
    let get = |f: &Map<String, Value>, k: &str| -> String {
        match f.get(k) {
            Some(Value::Number(n)) => format!("{}", n.as_f64().unwrap_or(0.0).round()),
            Some(v) => v.as_str().unwrap_or("").to_string(),
            None => "-".into(),
        }
    };
    let _ = writeln!(
        md,
        "| codec | participants/core | µs/participant/tick | real-time participants | missed 20 ms deadlines | late mixer ticks | max mix µs | recordings/core |\n|---|---|---|---|---|---|---|---|"
    );
    for codec in ["pcmu", "opus"] {
        let find = |name: &str| {
            rows.iter()
                .find(|(n, f)| n == name && f.get("codec").and_then(Value::as_str) == Some(codec))
                .map(|(_, f)| f.clone())
                .unwrap_or_default()
        };
        let (off, rt, rec) = (
            find("mixer_offline"),
            find("mixer_realtime"),
            find("recordings"),
        );
        let _ = writeln!(
            md,
            "| {codec} | {} | {} | {} in {} ticks | {} | {} | {} | {} |",
            get(&off, "participants_per_core"),
            get(&off, "us_per_participant"),
            get(&rt, "participants"),
            get(&rt, "ticks"),
            get(&rt, "missed_deadlines"),
            get(&rt, "late_ticks"),
            get(&rt, "max_mix_us"),
            get(&rec, "recordings_per_core"),
        );
    }
    let _ = writeln!(
        md,
        "\nLoad average (1 min) before/after: {load_before} / {} on {} CPUs; missed deadlines on a shared \
         machine come from other processes taking the core.",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    md.push_str(
        "\nNo reference conference mixer runs in the same bench: Debian's baresip 1.0 has no mixing module.\n",
    );
    println!("{out}\n{md}");
    let dir = target_dir()?.join("bench-mixer");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let json: Vec<Value> = rows
        .into_iter()
        .map(|(name, fields)| json!({ "name": name, "fields": fields }))
        .collect();
    fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    fs::write(dir.join("report.md"), &md)?;
    println!("xtask: report in {}", dir.join("report.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines() {
        let (name, f) =
            parse_line("mixer_offline codec=pcmu participants=20 us_per_tick=1133").unwrap();
        assert_eq!(name, "mixer_offline");
        assert_eq!(f["codec"], json!("pcmu"));
        assert_eq!(f["us_per_tick"], json!(1133.0));
        assert!(parse_line("garbage without fields =").is_none());
        assert!(parse_line("").is_none());
    }
}
