//! The control plane over real processes: REST API → tenant process → public edge, driven by
//! the real centrifuge-js SDK and `cent`; live config changes on an open connection, tenant
//! crashes, control-plane restarts, suspension, secret rotation and tenant isolation.

use std::time::Duration;

use anyhow::Result;
use rotor_e2e::control_plane::{kill9, open_chat, raw_connect, token, ControlPlane, Engine};
use rotor_e2e::{ClientScript, ProcessBuilder};
use serde_json::{json, Value};

#[tokio::test]
async fn a_project_built_through_rest_serves_the_js_sdk_and_a_namespace_change_acts_on_the_same_connection(
) -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(&mgmt, "Chat App", &[("chat", open_chat())])
        .await?;
    let out = ClientScript::node("cp_flow.mjs")
        .envs([
            ("ROTOR_BASE", cp.base.as_str()),
            ("ROTOR_SLUG", project.slug.as_str()),
            ("ROTOR_PROJECT", project.id.as_str()),
            ("ROTOR_TOKEN", mgmt.as_str()),
            ("ROTOR_API_KEY", project.key.as_str()),
            ("ROTOR_TOKEN_SECRET", project.secret.as_str()),
        ])
        .timeout(Duration::from_secs(30))
        .run()
        .await?
        .ensure_success()?;
    let o: Value = out.stdout_json()?;
    assert_eq!(
        o["first_publication"],
        json!({"data": {"n": 1}, "offset": 0}),
        "{o}"
    );
    assert_eq!(o["history_before"], 108, "history is off at first");
    assert_eq!(o["namespace_update"], 200);
    assert_eq!(o["second_publish"], json!({"offset": 1, "has_epoch": true}));
    assert_eq!(
        o["second_publication"],
        json!({"data": {"n": 2}, "offset": 1})
    );
    assert_eq!(o["history_after"], json!([{"data": {"n": 2}, "offset": 1}]));
    assert_eq!(
        o["connecting_total"], 1,
        "the SDK connected once: no reconnect for the change"
    );
    assert_eq!(o["client_after"], o["client"]);

    // The backend side with the real `cent` client through the same public endpoint.
    let cent = ClientScript::python("cp_cent.py")
        .envs([
            ("ROTOR_API_URL", cp.api_url(&project.slug)),
            ("ROTOR_API_KEY", project.key.clone()),
        ])
        .run()
        .await?
        .ensure_success()?;
    let c: Value = cent.stdout_json()?;
    assert_eq!(c["publish_offset"], 2);
    assert_eq!(c["history_offsets"], json!([1, 2]));
    assert_eq!(c["unknown_namespace_code"], 102);

    // Secrets never reach the logs: not the control plane's, not the tenant's.
    let mut logs = cp.process.as_ref().map(|p| p.output()).unwrap_or_default();
    logs.push_str(&std::fs::read_to_string(
        cp.run_dir.join(format!("{}.log", project.id)),
    )?);
    assert!(logs.contains("config applied"), "the logs were captured");
    for secret in [
        &mgmt,
        &project.key,
        &project.secret,
        &"a long password".to_owned(),
    ] {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appears in the logs"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_killed_tenant_process_comes_back_and_sdk_clients_reconnect() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(&mgmt, "crashy", &[("chat", open_chat())])
        .await?;
    let follower = ProcessBuilder::node_script("cp_follow.mjs")?
        .env("ROTOR_WS_URL", cp.ws_url(&project.slug))
        .env("ROTOR_TOKEN_SECRET", &project.secret)
        .ready_on(rotor_e2e::Readiness::Line("\"ev\":\"subscribed\"".into()))
        .spawn()
        .await?;
    let before = cp.tenant_record(&project.id)?;
    kill9(before["pid"].as_i64().unwrap());
    // The SDK sees the drop, reconnects through the edge once the supervisor restarted the
    // tenant, and subscribes again.
    wait_for_count(
        &follower,
        "\"ev\":\"subscribed\"",
        2,
        Duration::from_secs(20),
    )
    .await?;
    let after = cp.tenant_record(&project.id)?;
    assert_ne!(before["pid"], after["pid"], "a new tenant process");
    let (status, body) = cp
        .publish(&project, "chat:live", json!({"after": "restart"}))
        .await?;
    assert_eq!(status, 200, "{body}");
    follower
        .wait_for_output("{\"after\":\"restart\"}", Duration::from_secs(10))
        .await?;
    Ok(())
}

async fn wait_for_count(
    p: &rotor_e2e::TestProcess,
    needle: &str,
    n: usize,
    limit: Duration,
) -> Result<()> {
    let started = std::time::Instant::now();
    while p.output().matches(needle).count() < n {
        anyhow::ensure!(
            started.elapsed() < limit,
            "{needle} seen fewer than {n} times:\n{}",
            p.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn one_projects_keys_tokens_and_channels_are_useless_on_another() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let alice = cp.account("alice@example.com").await?;
    let bob = cp.account("bob@example.com").await?;
    let history =
        json!({"allow_subscribe_for_client": true, "history_size": 10, "history_ttl": "60s"});
    let a = cp
        .project(&alice, "alpha", &[("chat", history.clone())])
        .await?;
    let b = cp.project(&bob, "beta", &[("chat", history)]).await?;

    // A's key on B's API: refused.
    let resp = cp
        .http
        .post(format!("{}/publish", cp.api_url(&b.slug)))
        .header("X-API-Key", &a.key)
        .body(r#"{"channel":"chat:x","data":{}}"#)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 401);
    // A's token on B's endpoint: invalid token.
    assert_eq!(
        raw_connect(&cp.ws_url(&b.slug), &token(&a.secret, "u")).await?,
        Err(3500)
    );
    assert!(raw_connect(&cp.ws_url(&b.slug), &token(&b.secret, "u"))
        .await?
        .is_ok());
    // Same channel name, separate streams.
    let (s, r) = cp.publish(&a, "chat:x", json!({"secret": "alpha"})).await?;
    assert_eq!((s, r["result"]["offset"].as_u64()), (200, Some(1)));
    let resp: Value = cp
        .http
        .post(format!("{}/history", cp.api_url(&b.slug)))
        .header("X-API-Key", &b.key)
        .body(r#"{"channel":"chat:x","limit":-1}"#)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(resp["result"]["publications"], json!([]));
    assert_eq!(resp["result"]["offset"], 0);
    // And Bob's management token cannot see Alice's project.
    let (s, _) = cp.get_project(&bob, &a.id).await?;
    assert_eq!(s, 404);
    Ok(())
}

#[tokio::test]
async fn tenants_keep_serving_while_the_control_plane_restarts_and_it_reconciles_after(
) -> Result<()> {
    let mut cp = ControlPlane::start_eager().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(&mgmt, "steady", &[("chat", open_chat())])
        .await?;
    let record = cp.tenant_record(&project.id)?;
    let direct = format!("http://{}/api/publish", record["addr"].as_str().unwrap());
    if let Some(mut p) = cp.process.take() {
        p.terminate().await?;
    }
    // The tenant itself still answers while no control plane runs.
    let resp = cp
        .http
        .post(&direct)
        .header("X-API-Key", &project.key)
        .body(r#"{"channel":"chat:a","data":1}"#)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    cp.spawn().await?;
    let (s, _) = cp.publish(&project, "chat:a", json!(2)).await?;
    assert_eq!(s, 200, "the new control plane routes to the adopted tenant");
    assert_eq!(
        cp.tenant_record(&project.id)?["pid"],
        record["pid"],
        "adopted, not restarted"
    );
    let (s, _) = cp
        .put_namespace(
            &mgmt,
            &project.id,
            "news",
            json!({"allow_subscribe_for_client": true}),
        )
        .await?;
    assert_eq!(s, 201);
    cp.wait_applied(&mgmt, &project.id).await?;
    Ok(())
}

#[tokio::test]
async fn suspended_projects_refuse_traffic_and_unknown_slugs_are_404() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(&mgmt, "pausable", &[("chat", open_chat())])
        .await?;
    // A customer cannot lift or set a suspension; the operator does.
    let (s, b) = cp
        .patch_project(&mgmt, &project.id, json!({"status": "suspended"}))
        .await?;
    assert_eq!(s, 403, "{b}");
    cp.operator(&["suspend", &project.id]).await?;
    let started = std::time::Instant::now();
    loop {
        // While the tenant stops, a request may meet a closing connection: keep polling.
        let (s, body) = cp
            .publish(&project, "chat:a", json!(1))
            .await
            .unwrap_or((0, Value::Null));
        if s == 403 {
            assert_eq!(body["error"]["code"], "project_suspended");
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "still serving: {s} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = cp
        .patch_project(&mgmt, &project.id, json!({"status": "active"}))
        .await?;
    assert_eq!(s, 403, "a suspended customer cannot resume itself");
    cp.operator(&["resume", &project.id]).await?;
    cp.wait_applied(&mgmt, &project.id).await?;
    let started = std::time::Instant::now();
    loop {
        let (s, _) = cp
            .publish(&project, "chat:a", json!(1))
            .await
            .unwrap_or((0, Value::Null));
        if s == 200 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "not resumed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = cp
        .http
        .post(format!("{}/t/no-such-project/api/publish", cp.base))
        .body("{}")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 404);
    Ok(())
}

#[tokio::test]
async fn rotating_the_secret_without_grace_invalidates_old_tokens_and_with_grace_keeps_them(
) -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp.project(&mgmt, "rotating", &[]).await?;
    let url = cp.ws_url(&project.slug);
    let old = token(&project.secret, "u");
    let (_, r) = cp
        .call(
            "POST",
            &format!("/v1/projects/{}/secrets/rotate", project.id),
            Some(&mgmt),
            Some(json!({"grace_seconds": 600})),
        )
        .await?;
    cp.wait_applied(&mgmt, &project.id).await?;
    let fresh = r["token_hmac_secret"].as_str().unwrap().to_owned();
    assert!(
        raw_connect(&url, &old).await?.is_ok(),
        "grace period keeps the old secret"
    );
    assert!(raw_connect(&url, &token(&fresh, "u")).await?.is_ok());
    let (_, r) = cp
        .call(
            "POST",
            &format!("/v1/projects/{}/secrets/rotate", project.id),
            Some(&mgmt),
            None,
        )
        .await?;
    cp.wait_applied(&mgmt, &project.id).await?;
    assert_eq!(
        raw_connect(&url, &token(&fresh, "u")).await?,
        Err(3500),
        "no grace: the previous secret stops at once"
    );
    let newest = r["token_hmac_secret"].as_str().unwrap();
    assert!(raw_connect(&url, &token(newest, "u")).await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn config_changes_reach_the_tenant_quickly_measured_over_twenty_changes() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp.project(&mgmt, "latency", &[]).await?;
    let mut took = Vec::new();
    for n in 0..20 {
        let (s, _) = cp
            .put_namespace(&mgmt, &project.id, "chat", json!({"presence": n % 2 == 0}))
            .await?;
        assert_eq!(s, if n == 0 { 201 } else { 200 });
        took.push(cp.wait_applied(&mgmt, &project.id).await?);
    }
    took.sort();
    eprintln!(
        "config change → applied over {} changes: p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        took[took.len() / 2],
        took[(took.len() * 99) / 100],
        took[took.len() - 1]
    );
    // Correctness only (timings are for BENCHMARKS.md): every change was applied, in order.
    let (_, p) = cp.get_project(&mgmt, &project.id).await?;
    assert_eq!(p["applied_version"], p["config_version"]);
    Ok(())
}

#[tokio::test]
async fn a_new_project_accepts_its_first_connection_quickly_measured_over_five_projects(
) -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    // Five projects need more than the free plan's three.
    cp.operator(&["set-plan", "owner@example.com", "pro"])
        .await?;
    let mut took = Vec::new();
    for n in 0..5 {
        let started = std::time::Instant::now();
        let (s, p) = cp
            .call(
                "POST",
                "/v1/projects",
                Some(&mgmt),
                Some(json!({"name": format!("fresh {n}")})),
            )
            .await?;
        assert_eq!(s, 201, "{p}");
        let id = p["id"].as_str().unwrap_or_default();
        let slug = p["slug"].as_str().unwrap_or_default().to_owned();
        let (_, secrets) = cp.secrets(&mgmt, id).await?;
        let jwt = token(
            secrets["token_hmac_secret"].as_str().unwrap_or_default(),
            "u",
        );
        let url = cp.ws_url(&slug);
        // Until the tenant runs, the edge answers 503 and the handshake fails: poll.
        let deadline = started + Duration::from_secs(10);
        loop {
            if let Ok(Ok(reply)) = raw_connect(&url, &jwt).await {
                assert!(reply["connect"]["client"].is_string(), "{reply}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "project {slug} accepted no connection within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    eprintln!(
        "project create → first connection over {} projects: p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        took[took.len() / 2],
        took[(took.len() * 99) / 100],
        took[took.len() - 1]
    );
    Ok(())
}

#[tokio::test]
async fn a_redis_engine_project_keeps_its_keys_under_its_own_prefix() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let history =
        json!({"allow_subscribe_for_client": true, "history_size": 10, "history_ttl": "60s"});
    let project = cp
        .project_on(&mgmt, "redis app", Engine::Redis, &[("chat", history)])
        .await?;
    let id = &project.id;
    let (s, r) = cp
        .publish(&project, "chat:x", json!({"via": "redis"}))
        .await?;
    assert_eq!((s, r["result"]["offset"].as_u64()), (200, Some(1)), "{r}");
    let redis = redis::Client::open(rotor_e2e::paths::redis_url())?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let prefix = format!("rotor:{id}:");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    assert!(
        keys.iter().any(|k| k == &format!("{prefix}{{chat:x}}:s")),
        "{keys:?}"
    );
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
    Ok(())
}

/// Polls the usage API until `published` in the project totals reaches `want` (the collector
/// reads tenants every few seconds; there is no event to await).
async fn wait_published(cp: &ControlPlane, mgmt: &str, id: &str, want: i64) -> Result<Value> {
    let started = std::time::Instant::now();
    loop {
        let (_, u) = cp
            .call("GET", &format!("/v1/projects/{id}/usage"), Some(mgmt), None)
            .await?;
        let total: i64 = u["points"]
            .as_array()
            .map(|p| p.iter().map(|x| x["published"].as_i64().unwrap_or(0)).sum())
            .unwrap_or(0);
        if total >= want {
            return Ok(u);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "usage never reached {want}: {u}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn usage_is_collected_from_the_tenant_and_survives_a_control_plane_restart() -> Result<()> {
    let mut cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(&mgmt, "metered", &[("chat", open_chat())])
        .await?;
    for n in 0..3 {
        let (s, _) = cp.publish(&project, "chat:m", json!(n)).await?;
        assert_eq!(s, 200);
    }
    let usage = wait_published(&cp, &mgmt, &project.id, 3).await?;
    let total = |u: &Value, k: &str| {
        u["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[k].as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    assert_eq!(
        total(&usage, "published"),
        3,
        "exactly what was sent: {usage}"
    );
    assert_eq!(total(&usage, "api_calls"), 3);
    if let Some(mut p) = cp.process.take() {
        p.terminate().await?;
    }
    cp.spawn().await?;
    let (s, _) = cp.publish(&project, "chat:m", json!(4)).await?;
    assert_eq!(s, 200);
    let usage = wait_published(&cp, &mgmt, &project.id, 4).await?;
    assert_eq!(
        total(&usage, "published"),
        4,
        "kept across the restart and not counted twice: {usage}"
    );
    Ok(())
}

#[tokio::test]
async fn a_plan_change_acts_on_the_running_tenant() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp.project(&mgmt, "upgrading", &[]).await?;
    // 101 publishes in one batch request (microseconds apart): the free plan's 100/s refuses
    // exactly the last one.
    let batch = |n: usize| json!({"commands": (0..n).map(|i| json!({"publish": {"channel": "news", "data": i}})).collect::<Vec<_>>()});
    let errors = |r: &Value| {
        r["replies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["error"]["code"] == 111)
            .count()
    };
    let send = |body: Value| {
        let http = cp.http.clone();
        let url = format!("{}/batch", cp.api_url(&project.slug));
        let key = project.key.clone();
        async move {
            http.post(url)
                .header("X-API-Key", key)
                .body(body.to_string())
                .send()
                .await?
                .json::<Value>()
                .await
        }
    };
    assert_eq!(errors(&send(batch(101)).await?), 1);
    let (s, _) = cp
        .patch_project(&mgmt, &project.id, json!({"plan": "pro"}))
        .await?;
    assert_eq!(s, 403, "plans are the operator's");
    cp.operator(&["set-plan", &project.id, "pro"]).await?;
    cp.wait_applied(&mgmt, &project.id).await?;
    assert_eq!(errors(&send(batch(101)).await?), 0, "pro allows 5000/s");
    Ok(())
}
