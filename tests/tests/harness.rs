//! Tests of the end-to-end harness itself: databases, Redis prefixes, spawned processes and the
//! interop clients all behave as the other tests rely on.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{Context, Result};
use redis::AsyncCommands;
use rotor_e2e::{
    paths, run_node, run_python, ProcessBuilder, TestDatabase, TestProcess, TestRedis,
};
use sqlx::{Connection, PgConnection};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Bound on every single wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

async fn database_exists(name: &str) -> Result<bool> {
    let mut admin = PgConnection::connect(&paths::database_url()).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await?;
    admin.close().await?;
    Ok(count == 1)
}

#[tokio::test]
async fn a_fresh_database_accepts_writes_and_is_gone_after_drop() -> Result<()> {
    let db = TestDatabase::create().await?;
    let name = db.name().to_owned();
    assert!(name.starts_with("rotor_test_"), "{name}");
    assert!(database_exists(&name).await?);

    sqlx::query("CREATE TABLE greetings (id int PRIMARY KEY, text text NOT NULL)")
        .execute(db.pool())
        .await?;
    sqlx::query("INSERT INTO greetings (id, text) VALUES (1, 'hello'), (2, 'world')")
        .execute(db.pool())
        .await?;
    let texts: Vec<String> = sqlx::query_scalar("SELECT text FROM greetings ORDER BY id")
        .fetch_all(db.pool())
        .await?;
    assert_eq!(texts, ["hello", "world"]);

    // The URL handed to other processes reaches the same database.
    let mut other = PgConnection::connect(db.url()).await?;
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut other)
        .await?;
    assert_eq!(current, name);

    // Open connections (like a spawned server's) do not keep the database alive.
    drop(db);
    assert!(!database_exists(&name).await?, "{name} still exists");
    Ok(())
}

#[tokio::test]
async fn two_test_databases_are_distinct() -> Result<()> {
    let (a, b) = tokio::try_join!(TestDatabase::create(), TestDatabase::create())?;
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
    Ok(())
}

#[tokio::test]
async fn redis_keys_under_the_prefix_are_deleted_on_drop_and_others_kept() -> Result<()> {
    let redis = TestRedis::new().await?;
    let prefix = redis.prefix().to_owned();
    assert!(
        prefix.starts_with("rotor-test:") && prefix.ends_with(':'),
        "{prefix}"
    );

    // More keys than one SCAN batch, of several types.
    let mut connection = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..2500 {
        pipe.set(redis.key(&format!("string:{i}")), i).ignore();
    }
    pipe.hset(redis.key("hash"), "field", "value").ignore();
    pipe.rpush(redis.key("list"), "item").ignore();
    pipe.query_async::<()>(&mut connection).await?;
    assert_eq!(redis.keys().await?.len(), 2502);

    let outside = format!("rotor-test-outside:{}", prefix.trim_end_matches(':'));
    let _: () = connection.set(&outside, "keep").await?;

    drop(redis);
    let left: Vec<String> = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}*"))
        .arg("COUNT")
        .arg(100_000)
        .query_async::<(u64, Vec<String>)>(&mut connection)
        .await?
        .1;
    assert!(left.is_empty(), "left behind: {left:?}");
    let kept: Option<String> = connection.get(&outside).await?;
    assert_eq!(kept.as_deref(), Some("keep"));
    let _: () = connection.del(&outside).await?;
    Ok(())
}

/// A TCP server in Python that announces itself like the data plane does, greets each
/// connection and logs it.
const FAKE_SERVER: &str = r#"
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print("fake-server listening on 127.0.0.1:%d" % server.getsockname()[1], flush=True)
print("fake-server diagnostics go to stderr", file=sys.stderr, flush=True)
while True:
    connection, _ = server.accept()
    print("fake-server accepted a connection", flush=True)
    connection.sendall(b"hello\n")
    connection.close()
"#;

#[tokio::test]
async fn a_process_that_reports_listening_is_reachable_and_terminates_on_sigterm() -> Result<()> {
    let mut server = TestProcess::spawn_program("python3", &["-c", FAKE_SERVER], &[]).await?;
    assert_eq!(server.addr().ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr().port(), 0);
    assert_eq!(
        server.http_url("/api"),
        format!("http://{}/api", server.addr())
    );

    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(server.addr())).await??;
    let mut greeting = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut greeting)).await??;
    assert_eq!(greeting, "hello\n");

    server
        .wait_for_output("accepted a connection", WAIT)
        .await?;
    server
        .wait_for_output("diagnostics go to stderr", WAIT)
        .await?;

    let status = server.terminate_within(WAIT).await?;
    assert_eq!(status.signal(), Some(15), "{status}");
    assert!(server.output().contains("fake-server listening on"));
    Ok(())
}

#[tokio::test]
async fn a_process_that_never_reports_listening_times_out_with_a_clear_error() -> Result<()> {
    let error = ProcessBuilder::program("sh")
        .args(["-c", "echo starting up; exec sleep 60"])
        .label("silent-server")
        .ready_timeout(Duration::from_millis(500))
        .spawn()
        .await
        .err()
        .context("a process that never listens must not count as ready")?;
    let message = format!("{error:#}");
    assert!(
        message.contains("silent-server did not print a line containing \"listening on\""),
        "{message}"
    );
    assert!(message.contains("within 500ms"), "{message}");
    assert!(message.contains("starting up"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_process_that_exits_before_listening_reports_its_status_and_output() -> Result<()> {
    let error = TestProcess::spawn_program(
        "sh",
        &[
            "-c",
            "echo loading config; echo 'bad field: port' >&2; exit 3",
        ],
        &[("ROTOR_IGNORED", "1")],
    )
    .await
    .err()
    .context("a process that exits must not count as ready")?;
    let message = format!("{error:#}");
    assert!(message.contains("sh exited (exit status: 3)"), "{message}");
    assert!(message.contains("loading config"), "{message}");
    assert!(message.contains("bad field: port"), "{message}");
    Ok(())
}

#[tokio::test]
async fn the_listening_marker_is_configurable() -> Result<()> {
    let script = r#"
import socket
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print("ready, serving at 127.0.0.1:%d" % server.getsockname()[1], flush=True)
server.accept()
"#;
    let server = ProcessBuilder::program("python3")
        .args(["-c", script])
        .listening_marker("serving at")
        .ready_timeout(WAIT)
        .spawn()
        .await?;
    tokio::time::timeout(WAIT, TcpStream::connect(server.addr())).await??;
    Ok(())
}

#[tokio::test]
async fn a_missing_workspace_binary_is_reported_with_the_build_command() -> Result<()> {
    let error = TestProcess::spawn("rotor-no-such-binary", &[], &[])
        .await
        .err()
        .context("spawning a binary that does not exist must fail")?;
    let message = format!("{error:#}");
    assert!(message.contains("rotor-no-such-binary"), "{message}");
    assert!(
        message.contains("cargo build --workspace --bins"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn the_node_client_loads_the_pinned_centrifuge_sdk() -> Result<()> {
    let output = run_node("versions.js", &[], &[]).await?.ensure_success()?;
    let versions: BTreeMap<String, String> = output.stdout_json()?;
    assert_eq!(versions["centrifuge"], "5.7.4", "{output}");
    assert!(versions["ws"].starts_with("8."), "{output}");
    assert!(versions.contains_key("jsonwebtoken"), "{output}");
    Ok(())
}

#[tokio::test]
async fn the_python_client_loads_the_pinned_cent_and_centrifuge_packages() -> Result<()> {
    let output = run_python("versions.py", &[], &[])
        .await?
        .ensure_success()?;
    let versions: BTreeMap<String, String> = output.stdout_json()?;
    assert_eq!(versions["cent"], "5.2.0", "{output}");
    assert_eq!(versions["centrifuge-python"], "0.7.0", "{output}");
    assert!(versions.contains_key("pyjwt"), "{output}");
    Ok(())
}

#[tokio::test]
async fn a_failing_client_script_reports_its_status_and_both_outputs() -> Result<()> {
    // Preloading a module that prints on both streams and exits stands in for a failing client
    // (NODE_OPTIONS splits on spaces, so the module has none).
    let preload = "--import=data:text/javascript,\
                   console.log('said-on-stdout');console.error('said-on-stderr');process.exit(4)";
    let output = run_node("versions.js", &[], &[("NODE_OPTIONS", preload)]).await?;
    assert_eq!(output.status.code(), Some(4), "{output}");
    let message = format!(
        "{:#}",
        output
            .ensure_success()
            .err()
            .context("exit 4 is a failure")?
    );
    assert!(message.contains("exited with exit status: 4"), "{message}");
    assert!(message.contains("said-on-stdout"), "{message}");
    assert!(message.contains("said-on-stderr"), "{message}");

    let error = run_python("no-such-script.py", &[], &[])
        .await
        .err()
        .context("a missing script must fail")?;
    assert!(
        format!("{error:#}").contains("no client script"),
        "{error:#}"
    );
    Ok(())
}
