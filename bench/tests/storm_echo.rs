//! The connect storm's round trip without a protocol, end to end over real processes: the load
//! generator (`--protocol echo`) opens connections to `rotor-bare-ws /echo`, each sending one
//! frame and waiting for its answer; the run's result counts every opening, the CPU of the
//! server and of the load generator per connection, and the load generator's closed sockets
//! leave no port in TIME_WAIT for the next scenario (they end with a reset).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Sockets in TIME_WAIT (state 06 of /proc/net/tcp) with `port` at either end.
fn time_wait_on(port: u16) -> usize {
    let port = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 3 && f[3] == "06")
        .filter(|f| f[1].ends_with(&port) || f[2].ends_with(&port))
        .count()
}

#[test]
fn an_echo_storm_counts_every_round_trip_and_leaves_no_time_wait() {
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_rotor-bare-ws"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("rotor-bare-ws starts");
    let stdout = server.stdout.take().expect("its stdout");
    let server = Killed(server);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("its first line");
    assert!(first.contains("listening"), "bare server says: {first}");

    let out = std::env::temp_dir().join(format!("rotor-storm-echo-{}", std::process::id()));
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_rotor-loadgen"))
        .args([
            "run",
            "--name",
            "echo",
            "--scenario",
            "storm-echo",
            "--target",
            "bare",
        ])
        .args(["--mode", "storm", "--protocol", "echo"])
        .args(["--ws-url", &format!("ws://127.0.0.1:{port}/echo")])
        .args(["--conns", "200", "--workers", "2", "--connect-rate", "0"])
        .args([
            "--concurrency",
            "32",
            "--settle-ms",
            "0",
            "--max-secs",
            "30",
        ])
        .args(["--server-pid", &server.0.id().to_string()])
        .arg("--out-dir")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("rotor-loadgen runs");
    assert!(status.success(), "rotor-loadgen: {status}");
    assert!(started.elapsed() < Duration::from_secs(40));

    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("echo.json")).expect("the result file"))
            .expect("JSON");
    let _ = std::fs::remove_dir_all(&out);
    let connect = &result["connect"];
    assert_eq!(result["protocol"], "echo");
    assert_eq!(
        connect["connected"], 200,
        "every opening got its answer: {connect}"
    );
    assert_eq!(connect["failed"], 0, "{connect}");
    for key in [
        "server_cpu_us_per_conn",
        "loadgen_cpu_us_per_conn",
        "box_busy",
    ] {
        assert!(
            connect[key].as_f64().is_some_and(|v| v >= 0.0),
            "{key} is measured: {connect}"
        );
    }
    // The workers have exited: their sockets ended with a reset, not a FIN, so no port of
    // theirs waits out TIME_WAIT (the server closes nothing first here either).
    assert_eq!(time_wait_on(port), 0, "ports left in TIME_WAIT");
    drop(server);
}
