//! The raw numbers measured beside Rotor in the same run: `redis-benchmark` publishing to the
//! standalone Redis and to one primary of the cluster, and a NATS publisher and subscriber
//! (async-nats, two connections, as `nats bench --pub 1 --sub 1` does) on the nats-server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// One raw measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RawResult {
    /// What was measured, for tables.
    pub what: String,
    /// Messages per second.
    pub per_sec: f64,
    /// The tool's own summary line.
    pub detail: String,
}

/// The rate in a `redis-benchmark -q` summary (`PUBLISH: 123.45 requests per second, …`) and
/// the summary without the test's name.
pub fn parse_redis_benchmark(text: &str) -> Option<(f64, String)> {
    // redis-benchmark redraws its progress with '\r'; the summary is the last piece.
    // With a command of its own `-q` names the test by the whole command line, payload
    // included: only what follows the last ": " is kept.
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?
        .trim();
    let summary = line.rsplit(": ").next().unwrap_or(line).to_owned();
    let rate = summary
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok())?;
    Some((rate, summary))
}

/// `redis-benchmark -q` against `port` with `args` (`-n`, `-c`, the command): the rate and
/// its summary line.
pub fn redis_benchmark(program: &str, port: u16, args: &[String]) -> anyhow::Result<(f64, String)> {
    let out = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_redis_benchmark(&text) {
        Some(r) => Ok(r),
        None => bail!(
            "{program}: no rate in its output: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// One publisher connection publishing `messages` of `payload_bytes` to one subject as fast as
/// it can, one subscriber connection counting them: (publish rate, receive rate).
pub async fn nats_pub_sub(
    url: &str,
    messages: u64,
    payload_bytes: usize,
) -> anyhow::Result<Vec<RawResult>> {
    let subject = format!("rotor-bench-raw.{}", crate::payload::now_micros());
    let sub_client = async_nats::connect(url).await.context("NATS connect")?;
    let mut sub = sub_client.subscribe(subject.clone()).await?;
    sub_client.flush().await?;
    let publisher = async_nats::connect(url).await.context("NATS connect")?;
    let payload = bytes::Bytes::from("x".repeat(payload_bytes));
    let started = Instant::now();
    let counter = tokio::spawn(async move {
        let mut got = 0u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        while got < messages {
            match tokio::time::timeout_at(deadline.into(), sub.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        (got, Instant::now())
    });
    for _ in 0..messages {
        publisher.publish(subject.clone(), payload.clone()).await?;
    }
    publisher.flush().await?;
    let published = started.elapsed();
    let (got, last) = counter.await?;
    let received = last.duration_since(started);
    let pub_rate = messages as f64 / published.as_secs_f64();
    let sub_rate = got as f64 / received.as_secs_f64();
    Ok(vec![
        RawResult {
            what: "NATS publisher (async-nats, 1 connection)".into(),
            per_sec: pub_rate,
            detail: format!(
                "{messages} messages of {payload_bytes} B in {:.2} s",
                published.as_secs_f64()
            ),
        },
        RawResult {
            what: "NATS subscriber (async-nats, 1 connection, same run)".into(),
            per_sec: sub_rate,
            detail: format!(
                "{got} of {messages} received in {:.2} s",
                received.as_secs_f64()
            ),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_benchmark_summary_is_read_past_its_progress_line() {
        let out = "PUBLISH: rps=41000.0 (overall: 40990.2) avg_msec=0.6\r\
                   PUBLISH bench xxxx: 47125.35 requests per second, p50=0.503 msec\n\n";
        let (rate, line) = parse_redis_benchmark(out).unwrap();
        assert_eq!(rate, 47125.35);
        assert_eq!(line, "47125.35 requests per second, p50=0.503 msec");
        assert!(parse_redis_benchmark("ERR unknown command").is_none());
    }
}
