//! Trust boundaries of the hosted service, attacked as an outsider would through the real edge:
//! a customer's project cannot collect another customer's dashboard session or management
//! token, tenants on their own host never share the dashboard's origin, a tenant's internal
//! surfaces are not reachable from outside, and one socket never carries a second request
//! past the edge's rewrite.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Json;
use rotor_e2e::control_plane::browser::Browser;
use rotor_e2e::control_plane::{open_chat, raw_connect, read_answer, token, ws, ControlPlane};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The headers of every request the attacker's backend was sent.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<Vec<(String, String)>>>);

/// The attacking customer's backend: records every header its connect proxy receives and
/// accepts the connection.
async fn recording_backend(seen: Arc<Seen>) -> Result<String> {
    let on_connect = move |headers: HeaderMap, Json(_req): Json<Value>| async move {
        let pairs = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        seen.0.lock().expect("log").push(pairs);
        Json(json!({"result": {"user": "collected"}}))
    };
    let app = axum::Router::new().route("/connect", post(on_connect));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

/// Sends `raw` on a fresh connection to `addr` and reads until the peer closes (bounded).
async fn raw_exchange(addr: &str, raw: &[u8]) -> Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(raw).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .context("the connection was not closed after one request")??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn authority(base: &str) -> &str {
    base.trim_start_matches("http://")
}

#[tokio::test]
async fn a_project_cannot_collect_another_accounts_dashboard_session_or_management_token(
) -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_PRIVATE_EGRESS", "1")]).await?;
    // The victim: logged into the dashboard in a browser, with a management token too.
    let mut victim = Browser::new(&cp.base);
    assert_eq!(
        victim
            .signup("victim@example.com", "the victim's long password")
            .await?,
        303
    );
    let session = victim
        .cookies()
        .iter()
        .find(|(n, _)| n.ends_with("rotor_session"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .context("the victim has a dashboard session")?;
    let (s, t) = cp
        .call(
            "POST",
            "/v1/tokens",
            None,
            Some(json!({"email": "victim@example.com", "password": "the victim's long password", "name": "ci"})),
        )
        .await?;
    assert_eq!(s, 201, "{t}");
    let victim_token = t["token"].as_str().context("token")?.to_owned();
    // The session works on the dashboard's own origin.
    let (s, _) = cp
        .call("GET", "/v1/projects", Some(&victim_token), None)
        .await?;
    assert_eq!(s, 200);

    // The attacker: a project whose connect proxy asks for the Cookie and Authorization headers.
    let attacker = cp.account("attacker@example.com").await?;
    let project = cp.project(&attacker, "collector", &[]).await?;
    let seen = Arc::new(Seen::default());
    let backend = recording_backend(seen.clone()).await?;
    let settings = json!({"settings": {"client_proxy": {"connect": {
        "enabled": true,
        "endpoint": format!("{backend}/connect"),
        "http_headers": ["Cookie", "Authorization", "X-Forwarded-For", "X-App"],
    }}}});
    let (s, b) = cp.patch_project(&attacker, &project.id, settings).await?;
    assert_eq!(s, 200, "{b}");
    cp.wait_applied(&attacker, &project.id).await?;

    // The victim follows the attacker's link: the browser sends everything it holds for the
    // origin (the session, an application cookie) and the page adds the bearer token.
    victim.set("app", "kept");
    let url = format!(
        "{}/t/{}/connection/uni_sse?cf_connect={{}}",
        cp.base, project.slug
    );
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Cookie", victim.header())
        .header("Authorization", format!("Bearer {victim_token}"))
        .header("X-Forwarded-For", "198.51.100.9")
        .header("X-App", "visible")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut stream = String::new();
    while !stream.contains("\"connect\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .with_context(|| format!("no connect reply: {stream}"))??
            .with_context(|| format!("stream ended: {stream}"))?;
        stream.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);

    let requests = seen.0.lock().expect("log").clone();
    assert_eq!(requests.len(), 1, "one connect proxy call");
    let headers = &requests[0];
    let get = |name: &str| {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    let everything = format!("{headers:?}");
    assert!(
        !everything.contains(&session.1),
        "the victim's session id reached the tenant: {everything}"
    );
    assert!(
        !everything.contains(&victim_token),
        "the victim's management token reached the tenant: {everything}"
    );
    assert!(!everything.contains("rotor_"), "{everything}");
    assert_eq!(
        get("cookie"),
        vec!["app=kept"],
        "the app's own cookie is kept"
    );
    assert!(get("authorization").is_empty(), "{everything}");
    assert_eq!(
        get("x-app"),
        vec!["visible"],
        "allow-listed headers still pass"
    );
    assert!(
        !everything.contains("198.51.100.9"),
        "a client cannot forge its address: {everything}"
    );

    // The victim's session and token still work, and are still the victim's alone.
    let (s, _) = cp
        .call("GET", "/v1/projects", Some(&victim_token), None)
        .await?;
    assert_eq!(s, 200);
    let (s, _, _) = victim.get("/projects").await?;
    assert_eq!(s, 200);
    Ok(())
}

#[tokio::test]
async fn tenants_on_their_own_host_never_share_the_dashboards_origin() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_HOST", "{slug}.tenants.test")]).await?;
    let owner = cp.account("owner@example.com").await?;
    let project = cp.project(&owner, "own-host", &[]).await?;
    let port = cp.base.rsplit(':').next().context("port")?;
    let host = format!("{}.tenants.test", project.slug);

    // Endpoints are built from the tenant's own host.
    let (_, p) = cp.get_project(&owner, &project.id).await?;
    assert_eq!(
        p["endpoints"]["websocket"],
        format!("ws://{host}:{port}/connection/websocket"),
        "{p}"
    );
    assert_eq!(p["endpoints"]["api"], format!("http://{host}:{port}/api"));

    // The tenant answers on its host, at the root.
    let api = format!(
        "POST /api/info HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {}\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}",
        project.key
    );
    let reply = raw_exchange(authority(&cp.base), api.as_bytes()).await?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"nodes\""), "{reply}");
    // The dashboard is never served on a tenant host.
    let login = format!("GET /login HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let reply = raw_exchange(authority(&cp.base), login.as_bytes()).await?;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(!reply.contains("<form"), "{reply}");
    // The path form on the dashboard's origin is closed.
    let path_form = format!(
        "POST /t/{}/api/info HTTP/1.1\r\nHost: {}\r\nX-API-Key: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        project.slug,
        authority(&cp.base),
        project.key
    );
    let reply = raw_exchange(authority(&cp.base), path_form.as_bytes()).await?;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    // A WebSocket on the tenant's host is handed over and connects.
    let url = format!("ws://{}/connection/websocket", authority(&cp.base));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )?;
    request
        .headers_mut()
        .insert("Host", format!("{host}:{port}").parse()?);
    let stream = TcpStream::connect(authority(&cp.base)).await?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(request, stream),
    )
    .await??;
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"id": 1, "connect": {"token": token(&project.secret, "u1")}}).to_string(),
    ))
    .await?;
    let reply = ws::await_reply(&mut ws, 1).await?;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    Ok(())
}

/// A request whose target is not a path (`GET http://x/metrics`, absolute form) is refused by
/// the edge before routing: the tenant would route on the URI's path and serve its internal
/// surfaces, which the edge's filter reads from the first `/`.
#[tokio::test]
async fn absolute_form_targets_never_reach_a_tenants_internal_surfaces() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_HOST", "{slug}.tenants.test")]).await?;
    let owner = cp.account("owner@example.com").await?;
    let project = cp.project(&owner, "absolute", &[]).await?;
    let host = format!("{}.tenants.test", project.slug);
    for target in [
        "http://x/metrics".to_owned(),
        format!("http://{host}/metrics"),
        "http://x/admin/status".to_owned(),
        "http://x/api/info".to_owned(),
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let reply = raw_exchange(authority(&cp.base), raw.as_bytes()).await?;
        assert!(reply.starts_with("HTTP/1.1 400"), "{target}: {reply}");
        assert!(!reply.contains("# TYPE"), "{target}: {reply}");
    }
    // The same paths in origin form: the internal ones are 404, the tenant still answers.
    let raw = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let reply = raw_exchange(authority(&cp.base), raw.as_bytes()).await?;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    let raw = format!("GET /connection/init HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let reply = raw_exchange(authority(&cp.base), raw.as_bytes()).await?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    Ok(())
}

/// A server API call to `host` on a raw connection, with `key`.
fn raw_api(host: &str, method: &str, key: &str, body: &Value, extra: &str) -> String {
    let body = body.to_string();
    format!(
        "POST /api/{method} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A project's backend keeps its API connection at the project's own host: the edge hands it
/// to the project's process, which serves its follow-up API calls itself. Only the project's
/// own key earns that, and only the project's server API rides on it: another project's host,
/// the tenant's internal surfaces or a forged grant are refused, and the connection closes.
#[tokio::test]
async fn a_kept_api_connection_serves_only_its_own_projects_api() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_HOST", "{slug}.tenants.test")]).await?;
    let owner = cp.account("owner@example.com").await?;
    let history = json!({"history_size": 10, "history_ttl": "60s"});
    let project = cp
        .project(&owner, "kept", &[("chat", history.clone())])
        .await?;
    let other_owner = cp.account("other@example.com").await?;
    let other = cp
        .project(&other_owner, "other", &[("chat", history)])
        .await?;
    let port = cp.base.rsplit(':').next().context("port")?;
    let host = format!("{}.tenants.test:{port}", project.slug);
    let other_host = format!("{}.tenants.test:{port}", other.slug);
    let edge = authority(&cp.base);
    let publish = json!({"channel": "chat:a", "data": {"n": 1}});
    let count = |reply: &Value| reply["result"]["publications"].as_array().map(Vec::len);
    let history = json!({"channel": "chat:a", "limit": -1});

    // The backend: five publishes on one connection, then a history call.
    let mut conn = TcpStream::connect(edge).await?;
    for n in 0..5 {
        conn.write_all(raw_api(&host, "publish", &project.key, &publish, "").as_bytes())
            .await?;
        let (status, close, body) = read_answer(&mut conn).await?;
        anyhow::ensure!(status == 200 && !close, "publish {n}: {status} {body}");
    }
    conn.write_all(raw_api(&host, "history", &project.key, &history, "").as_bytes())
        .await?;
    let (_, close, body) = read_answer(&mut conn).await?;
    assert_eq!(count(&body), Some(5), "{body}");
    assert!(!close);
    // The other project's host, with its own key, on this connection: refused, closed, and
    // never published to either project.
    conn.write_all(raw_api(&other_host, "publish", &other.key, &publish, "").as_bytes())
        .await?;
    let (status, close, body) = read_answer(&mut conn).await?;
    assert_eq!((status, close), (421, true), "{body}");
    assert_eq!(body["error"]["code"], "misdirected_request");
    let mut conn = TcpStream::connect(edge).await?;
    conn.write_all(
        raw_api(
            &other_host,
            "history",
            &other.key,
            &history,
            "Connection: close\r\n",
        )
        .as_bytes(),
    )
    .await?;
    let (_, _, body) = read_answer(&mut conn).await?;
    assert_eq!(count(&body), Some(0), "{body}");

    // The tenant's admin surface, asked for on a kept connection: refused.
    let record = cp.tenant_record(&project.id)?;
    let admin_token = record["admin_token"].as_str().context("admin token")?;
    let mut conn = TcpStream::connect(edge).await?;
    conn.write_all(raw_api(&host, "info", &project.key, &json!({}), "").as_bytes())
        .await?;
    let smuggled = format!(
        "GET /admin/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {admin_token}\r\n\r\n"
    );
    let (status, close, _) = read_answer(&mut conn).await?;
    assert_eq!((status, close), (200, false));
    conn.write_all(smuggled.as_bytes()).await?;
    let (status, close, body) = read_answer(&mut conn).await?;
    assert_eq!((status, close), (421, true), "{body}");

    // A stranger's guessed key with a forged grant: one answer, then closed.
    let forged = format!("X-Rotor-Keep: rate=0; host={host}\r\n");
    let mut conn = TcpStream::connect(edge).await?;
    conn.write_all(raw_api(&host, "publish", "guessed", &publish, &forged).as_bytes())
        .await?;
    let (status, close, _) = read_answer(&mut conn).await?;
    assert_eq!((status, close), (401, true));
    Ok(())
}

#[tokio::test]
async fn a_tenants_admin_surface_and_metrics_are_not_reachable_from_outside() -> Result<()> {
    let cp = ControlPlane::start_eager().await?;
    let owner = cp.account("owner@example.com").await?;
    let project = cp.project(&owner, "internals", &[]).await?;
    let record = cp.tenant_record(&project.id)?;
    let admin_token = record["admin_token"].as_str().context("admin token")?;
    let public = record["addr"].as_str().context("addr")?;
    let admin = record["admin_addr"].as_str().context("admin addr")?;
    assert_ne!(public, admin, "the admin surface has its own listener");

    let http = reqwest::Client::new();
    for path in [
        "admin/status",
        "admin/usage",
        "%61dmin/status",
        "ADMIN/status",
        ".//admin/config",
        "metrics",
    ] {
        let resp = http
            .get(format!("{}/t/{}/{path}", cp.base, project.slug))
            .bearer_auth(admin_token)
            .header("X-API-Key", &project.key)
            .send()
            .await?;
        assert_eq!(resp.status(), 404, "{path} through the edge");
    }
    // On the tenant's public listener the admin routes do not exist, even with the token.
    let resp = http
        .get(format!("http://{public}/admin/status"))
        .bearer_auth(admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 404, "admin on the public listener");
    let resp = http.get(format!("http://{public}/metrics")).send().await?;
    assert_eq!(resp.status(), 401, "metrics need the project's API key");
    // The operator's side: the admin listener with the token.
    let resp = http
        .get(format!("http://{admin}/admin/status"))
        .bearer_auth(admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let resp = http
        .get(format!("http://{admin}/admin/status"))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    // The tenant kept serving throughout.
    let (s, b) = cp.publish(&project, "news", json!({"n": 1})).await?;
    assert_eq!(s, 200, "{b}");
    Ok(())
}

#[tokio::test]
async fn one_socket_never_carries_a_second_request_past_the_edge() -> Result<()> {
    let cp = ControlPlane::start_eager().await?;
    let owner = cp.account("owner@example.com").await?;
    let project = cp.project(&owner, "pipelined", &[]).await?;
    let record = cp.tenant_record(&project.id)?;
    let admin_token = record["admin_token"].as_str().context("admin token")?;
    let edge = authority(&cp.base);
    let smuggled = format!(
        "GET /admin/status HTTP/1.1\r\nAuthorization: Bearer {admin_token}\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n"
    );

    // A plain request with a second one pipelined behind it.
    let raw = format!(
        "GET /t/{}/connection/init HTTP/1.1\r\nHost: x\r\n\r\n{smuggled}",
        project.slug
    );
    let reply = raw_exchange(edge, raw.as_bytes()).await?;
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // A WebSocket handshake the tenant refuses (no key), then a smuggled request: the
    // handed-off socket serves the refusal and closes.
    let raw = format!(
        "GET /t/{}/connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n{smuggled}",
        project.slug
    );
    let reply = raw_exchange(edge, raw.as_bytes()).await?;
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    assert!(!reply.starts_with("HTTP/1.1 101"), "{reply}");
    assert!(
        !reply.contains("config_version"),
        "no admin answer: {reply}"
    );

    // An Upgrade that is not a WebSocket handshake is a plain request, never handed off.
    let raw = format!(
        "GET /t/{}/connection/init HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n{smuggled}",
        project.slug
    );
    let reply = raw_exchange(edge, raw.as_bytes()).await?;
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // A real WebSocket still connects through the edge.
    let reply = raw_connect(&cp.ws_url(&project.slug), &token(&project.secret, "u")).await?;
    let reply = reply.map_err(|code| anyhow::anyhow!("closed with {code}"))?;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    Ok(())
}

/// The variables of a process's environment, from `/proc/<pid>/environ`.
fn environ(pid: i64) -> Result<Vec<(String, String)>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .filter_map(|v| {
            let text = String::from_utf8_lossy(v);
            let (k, v) = text.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect())
}

#[tokio::test]
async fn a_tenant_process_inherits_nothing_of_the_control_planes_environment() -> Result<()> {
    // An operator's control plane holds the database URL and the key that seals every
    // customer's secrets, and may carry `ROTOR_…` options meant for itself, or a Centrifugo
    // deployment's `CENTRIFUGO_…` ones, which a data plane would read as config (here: API
    // keys and insecure mode for every tenant).
    let master = "7".repeat(64);
    let cp = ControlPlane::start_with_env(&[
        ("ROTOR_START_ON_DEMAND", "0"),
        ("ROTOR_SECRET_KEY", &master),
        ("ROTOR_HTTP_API_KEY", "operator-leaked-key"),
        ("ROTOR_CLIENT_INSECURE", "true"),
        ("CENTRIFUGO_HTTP_API_KEY", "centrifugo-leaked-key"),
        ("CENTRIFUGO_CLIENT_INSECURE", "true"),
        ("CENTRIFUGO_LOG_LEVEL", "none"),
        ("ROTOR_EGRESS_PORTS", "443,8443"),
    ])
    .await?;
    let token = cp.account("env@example.com").await?;
    let project = cp
        .project(&token, "clean-env", &[("chat", open_chat())])
        .await?;
    let pid = cp.tenant_record(&project.id)?["pid"]
        .as_i64()
        .context("tenant pid")?;
    let env = environ(pid)?;
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    for (name, value) in &env {
        anyhow::ensure!(
            !value.contains(&master)
                && !value.contains("operator-leaked-key")
                && !value.contains("centrifugo-leaked-key"),
            "{name} carries a control-plane secret"
        );
    }
    for leaked in [
        "DATABASE_URL",
        "ROTOR_SECRET_KEY",
        "ROTOR_HTTP_API_KEY",
        "ROTOR_CLIENT_INSECURE",
        "ROTOR_LISTEN",
        "ROTOR_RUN_DIR",
    ] {
        anyhow::ensure!(
            !names.contains(&leaked),
            "{leaked} reached the tenant: {names:?}"
        );
    }
    if let Some(name) = names.iter().find(|n| n.starts_with("CENTRIFUGO_")) {
        anyhow::bail!("{name} reached the tenant: {names:?}");
    }
    // What a tenant needs is there: its own token and identity, and the operator's egress ports.
    for needed in ["ROTOR_ADMIN_TOKEN", "ROTOR_TENANT_ID", "ROTOR_EGRESS_PORTS"] {
        anyhow::ensure!(names.contains(&needed), "{needed} missing: {names:?}");
    }

    // And the tenant's config is its project's: the operator's keys open nothing, an
    // anonymous connection is refused, the project's own key works.
    for leaked_key in ["operator-leaked-key", "centrifugo-leaked-key"] {
        let resp = cp
            .http
            .post(format!("{}/info", cp.api_url(&project.slug)))
            .header("X-API-Key", leaked_key)
            .body("{}")
            .send()
            .await?;
        anyhow::ensure!(
            resp.status() == 401,
            "the leaked key {leaked_key} was accepted: {}",
            resp.status()
        );
    }
    if let Ok(reply) = raw_connect(&cp.ws_url(&project.slug), "").await? {
        anyhow::ensure!(
            reply.get("connect").is_none(),
            "an anonymous connection was accepted: {reply}"
        );
    }
    let (status, body) = cp.publish(&project, "chat:x", json!({"ok": true})).await?;
    anyhow::ensure!(
        status == 200 && body.get("error").is_none(),
        "{status} {body}"
    );
    Ok(())
}
