//! `cargo xtask bench msrp`: the lab's MSRP relay throughput in MB/s.
//!
//! Runs the relay's parallel-transfer test (`labserver/tests/msrp_relay.rs`,
//! `parallel_pairs_relay_every_byte_and_report_throughput`) in release: `pairs` clients each send
//! `mb` MiB to another client through the relay (alternating TCP and TLS legs), every byte is
//! checked, and the test prints one `msrp_relay_throughput …` line, which is parsed here.
//! The client side runs in the same process on the same cores, so the figure is a lower bound
//! of what the relay alone sustains.

use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::cmd::cargo;

/// One throughput measurement of the MSRP relay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MsrpThroughput {
    /// Simultaneous sender/receiver pairs.
    pub pairs: usize,
    /// Chunk size in bytes.
    pub chunk: usize,
    /// Megabytes (10^6 bytes) relayed in total.
    pub total_mb: f64,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Relay throughput in MB/s (10^6 bytes per second), all pairs together.
    pub mb_per_s: f64,
}

/// Measures the relay with `pairs` transfers of `mb` MiB each in `chunk`-byte chunks.
pub fn msrp_throughput(pairs: usize, mb: usize, chunk: usize) -> Result<MsrpThroughput> {
    let mut cmd = cargo(&[
        "test",
        "--release",
        "-p",
        "tandem-labserver",
        "--test",
        "msrp_relay",
        "parallel_pairs_relay_every_byte_and_report_throughput",
        "--",
        "--nocapture",
        "--exact",
    ]);
    cmd.env("TANDEM_MSRP_BENCH_PAIRS", pairs.to_string())
        .env("TANDEM_MSRP_BENCH_MB", mb.to_string())
        .env("TANDEM_MSRP_BENCH_CHUNK", chunk.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd.output().context("running the MSRP relay bench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the MSRP relay bench failed ({}):\n{stdout}", out.status);
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("msrp_relay_throughput "))
        .with_context(|| format!("no msrp_relay_throughput line in:\n{stdout}"))?;
    parse(line)
}

/// Parses `msrp_relay_throughput pairs=2 chunk=65536 total_mb=33.6 secs=0.50 mb_per_s=67.1`.
fn parse(line: &str) -> Result<MsrpThroughput> {
    let get = |key: &str| -> Result<&str> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("no {key}= in {line:?}"))
    };
    Ok(MsrpThroughput {
        pairs: get("pairs")?.parse()?,
        chunk: get("chunk")?.parse()?,
        total_mb: get("total_mb")?.parse()?,
        secs: get("secs")?.parse()?,
        mb_per_s: get("mb_per_s")?.parse()?,
    })
}

/// `cargo xtask bench msrp [--pairs N] [--mb N] [--chunk BYTES]` (defaults 2, 256, 65536).
pub fn msrp(args: &[String]) -> Result<()> {
    let (mut pairs, mut mb, mut chunk) = (2usize, 256usize, 64 * 1024usize);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse::<usize>()
            .with_context(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--pairs" => pairs = value.clamp(1, 64),
            "--mb" => mb = value.clamp(1, 4096),
            "--chunk" => chunk = value.clamp(1024, 1 << 20),
            other => bail!(
                "usage: cargo xtask bench msrp [--pairs N] [--mb N] [--chunk BYTES] (unknown {other})"
            ),
        }
    }
    let mut sizes = vec![chunk];
    if chunk != 1 << 20 {
        sizes.push(1 << 20);
    }
    for chunk in sizes {
        let t = msrp_throughput(pairs, mb, chunk)?;
        println!(
            "msrp relay: {} pair(s), {} KiB chunks: {:.1} MB in {:.2} s = {:.1} MB/s",
            t.pairs,
            t.chunk / 1024,
            t.total_mb,
            t.secs,
            t.mb_per_s
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_test_line() {
        let t = parse(
            "msrp_relay_throughput pairs=2 chunk=65536 total_mb=33.6 secs=0.50 mb_per_s=67.1",
        )
        .unwrap();
        assert_eq!(t.pairs, 2);
        assert_eq!(t.chunk, 65536);
        assert!((t.mb_per_s - 67.1).abs() < 1e-9);
        assert!(parse("msrp_relay_throughput pairs=2").is_err());
    }
}
