//! Hosted projects' asynchronous consumers, end to end through a control plane and its tenant
//! process: the owner sets a PostgreSQL consumer on a database made for the test, has Rotor
//! create the outbox there (`POST /v1/projects/{id}/consumers/{name}/outbox`, idempotent), and
//! a row inserted in the outbox reaches a subscriber through the edge; the DSN is stored
//! sealed and redacted in the audit log; another account can neither read nor change the
//! consumers nor provision the outbox (404); the service's own database is refused even with
//! private egress allowed; and without that operator switch (the production rule) the
//! customer's database on a loopback address is refused before anything connects. A fake
//! server that announces a 4 GiB message fails the provisioning without growing the control
//! plane, which talks to customers' databases only from a memory-limited child process. An
//! enabled consumer pointed at the service's own database is refused by the tenant process
//! itself, private egress or not.
//!
//! The customer's database runs on the local PostgreSQL, which is also the control plane's
//! own: the tests reach it through a TCP forwarder on another port, as a customer's server
//! elsewhere would be, so the rule about the service's own address is not what they test
//! (except where they do).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::browser::Browser;
use rotor_e2e::control_plane::ws::Subscriber;
use rotor_e2e::control_plane::{open_chat, ControlPlane, Project};
use rotor_e2e::TestDatabase;
use serde_json::{json, Value};

/// Forwards connections from a loopback port to `target`, counting them.
struct Forwarder {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: String) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self {
            port,
            accepted,
            task,
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A forwarder to `db`'s server and `db`'s URL through it (same database, another port).
async fn through(db: &TestDatabase) -> Result<(Forwarder, String)> {
    let mut url = url::Url::parse(db.url())?;
    let target = format!(
        "{}:{}",
        url.host_str().context("host")?,
        url.port().unwrap_or(5432)
    );
    let forwarder = Forwarder::start(target).await?;
    url.set_host(Some("127.0.0.1"))?;
    url.set_port(Some(forwarder.port)).ok().context("port")?;
    Ok((forwarder, url.to_string()))
}

fn consumers(dsn: &str, enabled: bool) -> Value {
    json!([{"enabled": enabled, "name": "orders", "type": "postgresql", "postgresql": {
        "dsn": dsn, "outbox_table_name": "rotor_outbox",
        "partition_notification_channel": "rotor_outbox_change",
        "partition_poll_interval": "10s"}}])
}

async fn set_consumers(
    cp: &ControlPlane,
    token: &str,
    project: &Project,
    consumers: Value,
) -> Result<(u16, Value)> {
    cp.patch_project(
        token,
        &project.id,
        json!({"settings": {"consumers": consumers}}),
    )
    .await
}

async fn provision(cp: &ControlPlane, token: &str, id: &str, name: &str) -> Result<(u16, Value)> {
    cp.call(
        "POST",
        &format!("/v1/projects/{id}/consumers/{name}/outbox"),
        Some(token),
        None,
    )
    .await
}

#[tokio::test]
async fn an_outbox_row_in_the_customers_database_reaches_a_subscriber() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_PRIVATE_EGRESS", "1")]).await?;
    let customer = TestDatabase::create().await?;
    let (_forwarder, dsn) = through(&customer).await?;
    let (mut browser, token) = cp.dashboard_owner("consumers@example.com").await?;
    let project = cp
        .project(&token, "Outbox", &[("chat", open_chat())])
        .await?;

    // Disabled first: the table does not exist yet.
    let (s, b) = set_consumers(&cp, &token, &project, consumers(&dsn, false)).await?;
    ensure!(s == 200, "consumers not set: {s} {b}");
    let (s, made) = provision(&cp, &token, &project.id, "orders").await?;
    ensure!(s == 200, "outbox: {s} {made}");
    assert_eq!(
        made,
        json!({"table": "rotor_outbox", "created": true, "notification_channel": "rotor_outbox_change"})
    );
    let (s, again) = provision(&cp, &token, &project.id, "orders").await?;
    ensure!(s == 200, "outbox again: {s} {again}");
    assert_eq!(again["created"], false, "idempotent: {again}");
    let (s, b) = provision(&cp, &token, &project.id, "nope").await?;
    assert_eq!(s, 404, "{b}");
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'rotor_outbox_notify' AND NOT tgisinternal",
    )
    .fetch_one(customer.pool())
    .await?;
    assert_eq!(triggers, 1);

    // Enabled: a row inserted in the outbox reaches a subscriber through the edge, woken by
    // the trigger's NOTIFY well before the 10 s poll.
    let (s, b) = set_consumers(&cp, &token, &project, consumers(&dsn, true)).await?;
    ensure!(s == 200, "consumers not enabled: {s} {b}");
    cp.wait_applied(&token, &project.id).await?;
    let mut sub = Subscriber::open(
        &cp.ws_url(&project.slug),
        &project.secret,
        "u1",
        "chat:orders",
    )
    .await?;
    let inserted = std::time::Instant::now();
    sqlx::query(
        "INSERT INTO rotor_outbox (method, payload) VALUES \
         ('publish', '{\"channel\": \"chat:orders\", \"data\": {\"order\": 42}}')",
    )
    .execute(customer.pool())
    .await?;
    let data = sub.publication().await?;
    assert_eq!(data, json!({"order": 42}));
    let latency = inserted.elapsed();
    eprintln!("outbox row to subscriber through the edge: {latency:?}");
    assert!(
        latency < Duration::from_secs(5),
        "delivered by the NOTIFY, not the poll"
    );

    // The DSN is sealed at rest, opened for the owner, redacted in the audit log.
    let stored: Value = sqlx::query_scalar("SELECT settings FROM projects WHERE id = $1")
        .bind(&project.id)
        .fetch_one(cp.db.pool())
        .await?;
    let stored_dsn = stored["consumers"][0]["postgresql"]["dsn"]
        .as_str()
        .unwrap_or("");
    ensure!(
        !stored_dsn.is_empty() && !stored.to_string().contains(&dsn),
        "stored in clear: {stored}"
    );
    let (_, shown) = cp.get_project(&token, &project.id).await?;
    assert_eq!(shown["settings"]["consumers"][0]["postgresql"]["dsn"], dsn);
    let (_, audit) = cp
        .call(
            "GET",
            &format!("/v1/projects/{}/audit", project.id),
            Some(&token),
            None,
        )
        .await?;
    let audit_text = audit.to_string();
    ensure!(
        !audit_text.contains(&dsn),
        "the DSN is in the audit log: {audit_text}"
    );
    ensure!(
        audit_text.contains("consumers.outbox"),
        "provisioning is audited: {audit_text}"
    );

    // Another account: the same 404 as a project that does not exist.
    let other = cp.account("other-consumers@example.com").await?;
    let path = format!("/v1/projects/{}", project.id);
    let (s, _) = cp.call("GET", &path, Some(&other), None).await?;
    assert_eq!(s, 404);
    let (s, _) = set_consumers(
        &cp,
        &other,
        &project,
        consumers("postgresql://x@203.0.113.1/x", true),
    )
    .await?;
    assert_eq!(s, 404);
    let (s, _) = provision(&cp, &other, &project.id, "orders").await?;
    assert_eq!(s, 404);
    let (_, shown) = cp.call("GET", &path, Some(&token), None).await?;
    assert_eq!(
        shown["settings"]["consumers"][0]["postgresql"]["dsn"], dsn,
        "unchanged"
    );

    // The dashboard's consumers card: where the server is, and its outbox button (CSRF form).
    let settings_page = format!("/projects/{}/settings", project.id);
    let (status, html, _) = browser.get(&settings_page).await?;
    assert_eq!(status, 200);
    let port = url::Url::parse(&dsn)?.port().context("port")?;
    ensure!(
        html.contains("name=\"consumer\" value=\"orders\"")
            && html.contains(&format!("127.0.0.1:{port}")),
        "{html}"
    );
    let action = format!("/projects/{}/settings/consumers/outbox", project.id);
    let (status, _, _, _) = browser
        .post(&action, &[("csrf", "forged"), ("consumer", "orders")])
        .await?;
    assert_eq!(status, 403, "a forged form is refused");
    let csrf = Browser::csrf_in(&html);
    let (status, _, location, _) = browser
        .post(&action, &[("csrf", csrf.as_str()), ("consumer", "orders")])
        .await?;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some(format!("{settings_page}#consumers").as_str())
    );
    let (_, html, _) = browser.get(&settings_page).await?;
    ensure!(
        html.contains("Outbox rotor_outbox was there already"),
        "{html}"
    );

    // The service's own database is refused, private egress or not.
    let mut both = consumers(&dsn, false);
    both.as_array_mut().unwrap().push(
        json!({"enabled": false, "name": "own", "type": "postgresql",
        "postgresql": {"dsn": cp.db.url(), "outbox_table_name": "rotor_outbox"}}),
    );
    let (s, b) = set_consumers(&cp, &token, &project, both).await?;
    ensure!(s == 200, "{s} {b}");
    let (s, b) = provision(&cp, &token, &project.id, "own").await?;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["error"]["field"], "settings.consumers[1].postgresql.dsn",
        "{b}"
    );
    ensure!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("service's own"),
        "{b}"
    );
    let leaked: Option<String> = sqlx::query_scalar("SELECT to_regclass('rotor_outbox')::text")
        .fetch_one(cp.db.pool())
        .await?;
    assert_eq!(
        leaked, None,
        "nothing was created in the service's database"
    );
    Ok(())
}

/// A fake PostgreSQL server: answers each startup packet with an authentication message that
/// claims to be nearly 4 GiB long, then streams zeros (at most `ZEROS` bytes per connection,
/// enough to show in the memory of whoever buffers it). Counts its connections.
async fn lying_server() -> Result<(u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ZEROS: usize = 512 << 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut startup = [0u8; 1024];
                if conn.read(&mut startup).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut head = vec![b'R'];
                head.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
                if conn.write_all(&head).await.is_err() {
                    return;
                }
                let zeros = vec![0u8; 64 << 10];
                let mut sent = 0;
                while sent < ZEROS && conn.write_all(&zeros).await.is_ok() {
                    sent += zeros.len();
                }
            });
        }
    });
    Ok((port, accepted, task))
}

/// The peak resident memory of process `pid` in KiB (`VmHWM`).
fn peak_resident_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    line.split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()
        .context("not a number")
}

#[tokio::test]
async fn a_server_announcing_a_huge_message_fails_the_outbox_not_the_control_plane() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_PRIVATE_EGRESS", "1")]).await?;
    let (port, accepted, _server) = lying_server().await?;
    let token = cp.account("consumers-huge@example.com").await?;
    let project = cp
        .project(&token, "Outbox", &[("chat", open_chat())])
        .await?;
    let dsn = format!("postgresql://app:pw@127.0.0.1:{port}/app");
    let (s, b) = set_consumers(&cp, &token, &project, consumers(&dsn, false)).await?;
    ensure!(s == 200, "consumers not set: {s} {b}");

    let resp = cp
        .http
        .post(format!(
            "{}/v1/projects/{}/consumers/orders/outbox",
            cp.base, project.id
        ))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .context("the provisioning call got no answer")?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await?;
    assert_eq!(status, 502, "{body}");
    ensure!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("could not be read as PostgreSQL's"),
        "{body}"
    );
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the server was dialled"
    );

    let (s, b) = cp.call("GET", "/health", None, None).await?;
    assert_eq!((s, &b), (200, &json!({"status": "ok"})));
    let pid = cp
        .process
        .as_ref()
        .and_then(|p| p.pid())
        .context("the control plane runs")?;
    let peak = peak_resident_kib(pid)?;
    ensure!(
        peak < 256 << 10,
        "the control plane's peak resident memory grew to {peak} KiB"
    );
    Ok(())
}

#[tokio::test]
async fn with_private_egress_a_consumer_still_cannot_reach_the_service_database() -> Result<()> {
    // The tenant starts with its project (no client will come to start it).
    let cp = ControlPlane::start_with_env(&[
        ("ROTOR_TENANT_PRIVATE_EGRESS", "1"),
        ("ROTOR_START_ON_DEMAND", "0"),
    ])
    .await?;
    let token = cp.account("consumers-own@example.com").await?;
    let project = cp
        .project(&token, "Outbox", &[("chat", open_chat())])
        .await?;
    let mut own = url::Url::parse(cp.db.url())?;
    own.query_pairs_mut()
        .append_pair("application_name", "rotor_own_consumer");
    let (s, b) = set_consumers(&cp, &token, &project, consumers(own.as_str(), true)).await?;
    ensure!(s == 200, "consumers not set: {s} {b}");
    cp.wait_applied(&token, &project.id).await?;

    // The tenant process says it refused the connection (its log, written by the supervisor).
    let log = cp.run_dir.join(format!("{}.log", project.id));
    let refused = async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("consumer connection refused") && text.contains("service's own") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), refused)
        .await
        .with_context(|| {
            format!(
                "no refusal in the tenant's log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
    let connected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rotor_own_consumer'",
    )
    .fetch_one(cp.db.pool())
    .await?;
    assert_eq!(connected, 0, "the consumer reached the service's database");
    Ok(())
}

#[tokio::test]
async fn the_production_rule_refuses_a_loopback_database_before_connecting() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_CONSUMER_EGRESS_PORTS", "any")]).await?;
    let customer = TestDatabase::create().await?;
    let (forwarder, dsn) = through(&customer).await?;
    let token = cp.account("consumers-prod@example.com").await?;
    let project = cp
        .project(&token, "Outbox", &[("chat", open_chat())])
        .await?;
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        let mut url = url::Url::parse(&dsn)?;
        url.set_host(Some(host))?;
        let (s, b) = set_consumers(&cp, &token, &project, consumers(url.as_str(), false)).await?;
        ensure!(s == 200, "{host}: {s} {b}");
        let (s, b) = provision(&cp, &token, &project.id, "orders").await?;
        assert_eq!(s, 400, "{host}: {b}");
        assert_eq!(
            b["error"]["field"], "settings.consumers[0].postgresql.dsn",
            "{b}"
        );
        ensure!(
            b["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("not public"),
            "{host}: {b}"
        );
    }
    assert_eq!(
        forwarder.accepted.load(Ordering::SeqCst),
        0,
        "nothing connected"
    );
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('rotor_outbox')::text")
        .fetch_one(customer.pool())
        .await?;
    assert_eq!(table, None);
    // Settings a hosted project may not have are refused with their path.
    let (s, b) = set_consumers(
        &cp,
        &token,
        &project,
        json!([{"name": "tls", "type": "postgresql", "postgresql": {
            "dsn": "postgresql://app:pw@db.example.com/app?sslrootcert=/etc/ssl/private/key.pem",
            "outbox_table_name": "rotor_outbox"}}]),
    )
    .await?;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["error"]["field"], "settings.consumers[0].postgresql.dsn",
        "{b}"
    );
    Ok(())
}

/// The dashboard's consumer editor: the owner adds a consumer (stored sealed, listed by its
/// server only), switches it off, and removes it; a bad kind is refused in words and changes
/// nothing; another account's session cannot touch it.
#[tokio::test]
async fn the_dashboard_edits_consumers_for_their_owner_only() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let (mut browser, token) = cp.dashboard_owner("editor@example.com").await?;
    let project = cp.project(&token, "Editor", &[]).await?;
    let page = format!("/projects/{}/settings", project.id);
    let action = format!("{page}/consumers");
    let listed = |settings: &Value| settings["settings"]["consumers"].clone();
    let path = format!("/v1/projects/{}", project.id);
    let (_, html, _) = browser.get(&page).await?;
    let csrf = Browser::csrf_in(&html);
    let dsn = "postgresql://app:editor-pw@db.example.com:5432/app";
    let options = json!({"dsn": dsn, "outbox_table_name": "centrifugo_outbox"}).to_string();
    let add = [
        ("csrf", csrf.as_str()),
        ("name", "orders"),
        ("kind", "postgresql"),
        ("options", options.as_str()),
    ];
    let (status, _, _, _) = browser.post(&action, &add).await?;
    assert_eq!(status, 303);
    let (_, shown) = cp.call("GET", &path, Some(&token), None).await?;
    assert_eq!(
        listed(&shown),
        json!([{"enabled": true, "name": "orders", "type": "postgresql",
            "postgresql": {"dsn": dsn, "outbox_table_name": "centrifugo_outbox"}}])
    );
    let stored: Value = sqlx::query_scalar("SELECT settings FROM projects WHERE id = $1")
        .bind(&project.id)
        .fetch_one(cp.db.pool())
        .await?;
    ensure!(
        !stored.to_string().contains("editor-pw"),
        "sealed: {stored}"
    );
    let (_, html, _) = browser.get(&page).await?;
    ensure!(
        html.contains("Consumer orders saved.")
            && html.contains("db.example.com:5432")
            && !html.contains("editor-pw"),
        "{html}"
    );

    let (status, _, _, _) = browser
        .post(&action, &[("csrf", csrf.as_str()), ("switch", "orders")])
        .await?;
    assert_eq!(status, 303);
    let (_, shown) = cp.call("GET", &path, Some(&token), None).await?;
    assert_eq!(listed(&shown)[0]["enabled"], false);

    let bad = [
        ("csrf", csrf.as_str()),
        ("name", "queue"),
        ("kind", "kafka"),
        ("options", "{}"),
    ];
    browser.post(&action, &bad).await?;
    let (_, html, _) = browser.get(&page).await?;
    ensure!(html.contains("the kind must be one of"), "{html}");
    let (_, after) = cp.call("GET", &path, Some(&token), None).await?;
    assert_eq!(listed(&after), listed(&shown), "nothing changed");

    // Another account's session, with its own valid CSRF token.
    let (mut stranger, _) = cp.dashboard_owner("stranger@example.com").await?;
    let (_, own_page, _) = stranger.get("/projects").await?;
    let theirs = Browser::csrf_in(&own_page);
    let (status, _, _, _) = stranger
        .post(&action, &[("csrf", theirs.as_str()), ("remove", "orders")])
        .await?;
    assert_eq!(status, 404);
    let (_, after) = cp.call("GET", &path, Some(&token), None).await?;
    assert_eq!(
        listed(&after),
        listed(&shown),
        "the stranger changed nothing"
    );

    let (status, _, _, _) = browser
        .post(&action, &[("csrf", csrf.as_str()), ("remove", "orders")])
        .await?;
    assert_eq!(status, 303);
    let (_, shown) = cp.call("GET", &path, Some(&token), None).await?;
    assert_eq!(listed(&shown), Value::Null, "removed");
    Ok(())
}
