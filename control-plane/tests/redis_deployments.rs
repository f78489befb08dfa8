//! The operator's Redis deployments (#23 item 6): added with options the data plane's own
//! schema checks (the bad field named, no value repeated), stored sealed, listed and audited
//! without credentials; new Redis-engine projects spread over the open deployments (closed
//! ones skipped, concurrent creations counted), compile onto their deployment under their own
//! prefix; a deployment in use cannot be removed; a move must say what happens to the history,
//! is held alone, is called off when no control plane confirms the tenant stopped, and refuses
//! two names for one keyspace; customers can neither choose a deployment nor see one.

mod common;
mod fixtures;

use std::time::Duration;

use common::Api;
use fixtures::*;
use rotor_control_plane::ids::ProjectId;
use rotor_control_plane::tenant::compile;
use serde_json::{json, Value};

const PASSWORD: &str = "deploy-pass-5e1f";

/// Runs `rotor-control-plane operator ARGS…` with `stdin` in this test's environment (the
/// same secret key as this process) with debug logs on; (success, stdout + stderr).
async fn operator(api: &Api, args: &[&str], stdin: &str) -> (bool, String) {
    // The key this process seals with exists before the command looks for it.
    rotor_control_plane::sealed::Keyring::global().unwrap();
    api.operator("placement-ops", "debug", args, stdin).await
}

async fn add(api: &Api, name: &str, options: Value) {
    let (ok, out) = operator(api, &["add-redis-deployment", name], &options.to_string()).await;
    assert!(ok, "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
}

async fn redis_project(api: &Api, token: &str, body: Value) -> ProjectId {
    let (s, p) = api
        .call("POST", "/v1/projects", Some(token), Some(body))
        .await;
    assert_eq!(s, 201, "{p}");
    pid(&p)
}

async fn deployment_of(api: &Api, id: &ProjectId) -> Option<String> {
    sqlx::query_scalar("SELECT redis_deployment FROM projects WHERE id = $1")
        .bind(id)
        .fetch_one(&api.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn deployments_are_checked_sealed_listed_and_audited_without_their_secrets() {
    let api = Api::start().await;
    let standalone = json!({"address": format!("redis://:{PASSWORD}@10.1.0.5:6379/0")});
    add(&api, "eu-1", standalone.clone()).await;
    add(
        &api,
        "eu-sentinel",
        json!({"sentinel_address": ["10.1.0.7:26379"], "sentinel_master_name": "main",
            "sentinel_password": PASSWORD}),
    )
    .await;
    // A second add of the same name must say --replace; with it the options change.
    let (ok, out) = operator(
        &api,
        &["add-redis-deployment", "eu-1"],
        &standalone.to_string(),
    )
    .await;
    assert!(!ok && out.contains("--replace"), "{out}");
    let cluster = json!({"cluster_address": [format!("redis://u:{PASSWORD}@10.1.0.9:7000")]});
    let (ok, out) = operator(
        &api,
        &["add-redis-deployment", "eu-1", "--replace"],
        &cluster.to_string(),
    )
    .await;
    assert!(ok && !out.contains(PASSWORD), "{out}");

    // Bad forms are refused with the option named and no value repeated.
    for (bad, field) in [
        (
            json!({"address": "redis://a:1", "cluster_address": ["b:2"]}),
            "engine.redis.cluster_address",
        ),
        (
            json!({"sentinel_address": ["s:26379"], "sentinel_password": PASSWORD}),
            "engine.redis.sentinel_master_name",
        ),
        (
            json!({"address": "redis://a:1", "prefix": "mine:"}),
            "engine.redis.prefix",
        ),
        (
            json!({"address": format!("rediss://:{PASSWORD}@a:1"), "tls": {"key_pem_file": "/etc/key.pem"}}),
            "engine.redis.tls.key_pem_file",
        ),
        (
            json!({"address": "redis://a:1", "tls": {"enabled": PASSWORD}}),
            "engine.redis.tls.enabled",
        ),
    ] {
        let (ok, out) = operator(&api, &["add-redis-deployment", "bad"], &bad.to_string()).await;
        assert!(!ok && out.contains(field), "{bad}: {out}");
        assert!(!out.contains(PASSWORD), "{out}");
    }
    let (ok, out) = operator(
        &api,
        &["add-redis-deployment", "bad"],
        &format!("{{\"address\": \"redis://:{PASSWORD}@a:1\""),
    )
    .await;
    assert!(!ok && !out.contains(PASSWORD), "{out}");

    // Listed with hosts and form, never credentials.
    let (ok, list) = operator(&api, &["list-redis-deployments"], "").await;
    assert!(ok, "{list}");
    assert!(!list.contains(PASSWORD), "{list}");
    assert!(
        list.contains("eu-1\tcluster\tredis://10.1.0.9:7000\ttls=false\topen\tprojects=0"),
        "{list}"
    );
    assert!(
        list.contains("eu-sentinel\tsentinel\t10.1.0.7:26379"),
        "{list}"
    );
    assert!(!list.contains("bad"), "{list}");

    // Sealed at rest; the audit says what changed, not what it holds.
    let dump: Vec<String> = sqlx::query_scalar("SELECT d::text FROM redis_deployments d")
        .fetch_all(&api.pool)
        .await
        .unwrap();
    let dump = dump.join("\n");
    assert!(
        !dump.contains(PASSWORD) && !dump.contains("10.1.0"),
        "{dump}"
    );
    assert!(dump.contains("sealed:v1:"), "{dump}");
    let audit = audit_text(&api).await;
    assert!(
        audit.contains("operator:placement-ops operator.redis_deployment_add eu-1"),
        "{audit}"
    );
    assert!(
        audit.contains("operator.redis_deployment_replace eu-1"),
        "{audit}"
    );
    assert!(
        !audit.contains(PASSWORD) && !audit.contains("sealed:"),
        "{audit}"
    );
}

#[tokio::test]
async fn new_redis_projects_spread_over_the_open_deployments_and_compile_onto_them() {
    let api = Api::start().await;
    let token = api.account("placement@example.com").await;
    // No deployment: the installation's Redis, as before.
    let before = redis_project(&api, &token, json!({"name": "before", "engine": "redis"})).await;
    assert_eq!(deployment_of(&api, &before).await, None);
    let compiled = compile(&api.pool, &before, Some("redis://default:6379"), None)
        .await
        .unwrap();
    assert_eq!(
        compiled.config.engine.redis.address.0,
        ["redis://default:6379"]
    );

    add(
        &api,
        "a",
        json!({"address": format!("redis://:{PASSWORD}@10.2.0.1:6379")}),
    )
    .await;
    add(
        &api,
        "b",
        json!({"cluster_address": ["10.2.0.2:7000", "10.2.0.3:7000"]}),
    )
    .await;
    // Concurrent creations by different accounts (no account lock between them) count one
    // another: 3 + 3.
    let mut tokens = Vec::new();
    for i in 0..6 {
        tokens.push(api.account(&format!("spread{i}@example.com")).await);
    }
    let creations = tokens.iter().enumerate().map(|(i, token)| {
        let api = &api;
        async move {
            redis_project(
                api,
                token,
                json!({"name": format!("p{i}"), "engine": "redis"}),
            )
            .await
        }
    });
    let ids = futures_util::future::join_all(creations).await;
    let mut on = std::collections::HashMap::<String, u32>::new();
    for id in &ids {
        *on.entry(deployment_of(&api, id).await.unwrap())
            .or_default() += 1;
    }
    assert_eq!((on["a"], on["b"]), (3, 3), "{on:?}");
    // The memory engine is placed nowhere.
    let memory = redis_project(&api, &token, json!({"name": "mem"})).await;
    assert_eq!(deployment_of(&api, &memory).await, None);

    // A closed deployment takes no new project, even when emptier.
    let (ok, out) = operator(&api, &["close-redis-deployment", "b"], "").await;
    assert!(ok, "{out}");
    for (i, token) in tokens.iter().take(2).enumerate() {
        let id = redis_project(
            &api,
            token,
            json!({"name": format!("late{i}"), "engine": "redis"}),
        )
        .await;
        assert_eq!(deployment_of(&api, &id).await.as_deref(), Some("a"));
    }
    let (ok, out) = operator(&api, &["open-redis-deployment", "b"], "").await;
    assert!(ok, "{out}");
    let id = redis_project(
        &api,
        &tokens[2],
        json!({"name": "reopened", "engine": "redis"}),
    )
    .await;
    assert_eq!(deployment_of(&api, &id).await.as_deref(), Some("b"));

    // Each tenant runs on its deployment's nodes and credentials under its own prefix.
    for id in &ids {
        let c = compile(&api.pool, id, Some("redis://default:6379"), None)
            .await
            .unwrap()
            .config;
        let redis = &c.engine.redis;
        assert_eq!(redis.prefix, format!("rotor:{id}:"));
        match deployment_of(&api, id).await.as_deref() {
            Some("a") => assert_eq!(
                redis.address.0,
                [format!("redis://:{PASSWORD}@10.2.0.1:6379")]
            ),
            _ => assert_eq!(redis.cluster_address.0, ["10.2.0.2:7000", "10.2.0.3:7000"]),
        }
    }
    let audit = audit_text(&api).await;
    assert!(
        audit.contains("operator.redis_deployment_close b"),
        "{audit}"
    );
    assert!(
        audit.contains("operator.redis_deployment_open b"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_used_deployment_cannot_be_removed_and_a_move_must_say_what_happens_to_history() {
    let api = Api::start().await;
    let token = api.account("remove@example.com").await;
    add(&api, "used", json!({"address": "redis://10.3.0.1:6379"})).await;
    let id = redis_project(&api, &token, json!({"name": "on used", "engine": "redis"})).await;
    add(&api, "spare", json!({"address": "redis://10.3.0.2:6379"})).await;

    let (ok, out) = operator(&api, &["remove-redis-deployment", "used"], "").await;
    assert!(!ok && out.contains("still holds 1 project"), "{out}");
    let (ok, out) = operator(&api, &["move-project", id.as_str(), "spare"], "").await;
    assert!(!ok && out.contains("--history"), "{out}");
    let (ok, out) = operator(
        &api,
        &["move-project", id.as_str(), "spare", "--history", "maybe"],
        "",
    )
    .await;
    assert!(
        !ok && out.contains("drain") && out.contains("drop"),
        "{out}"
    );
    assert_eq!(deployment_of(&api, &id).await.as_deref(), Some("used"));
    let (ok, out) = operator(
        &api,
        &["move-project", id.as_str(), "nowhere", "--history", "drop"],
        "",
    )
    .await;
    assert!(
        !ok && out.contains("no Redis deployment \"nowhere\""),
        "{out}"
    );

    let (ok, out) = operator(&api, &["remove-redis-deployment", "spare"], "").await;
    assert!(ok, "{out}");
    let (ok, list) = operator(&api, &["list-redis-deployments"], "").await;
    assert!(
        ok && list.contains("used") && !list.contains("spare"),
        "{list}"
    );
    assert!(audit_text(&api)
        .await
        .contains("operator.redis_deployment_remove spare"));
}

/// The local Redis (`REDIS_URL`) in database `db`.
fn local_redis(db: u8) -> Value {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    json!({"address": format!("{}/{db}", url.trim_end_matches('/'))})
}

async fn holds(api: &Api) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM redis_moves")
        .fetch_one(&api.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_move_is_held_alone_needs_a_control_plane_to_stop_the_tenant_and_refuses_one_keyspace() {
    let api = Api::start().await;
    let token = api.account("held@example.com").await;
    add(&api, "near", local_redis(7)).await;
    let id = redis_project(&api, &token, json!({"name": "held", "engine": "redis"})).await;
    add(&api, "far", local_redis(8)).await;
    let args = ["move-project", id.as_str(), "far", "--history", "drop"];

    // A hold under way (another move's) refuses a second move.
    sqlx::query(
        "INSERT INTO redis_moves (project_id, deployment, history, expires_at) \
         VALUES ($1, 'far', 'drain', now() + interval '60 seconds')",
    )
    .bind(&id)
    .execute(&api.pool)
    .await
    .unwrap();
    let (ok, out) = operator(&api, &args, "").await;
    assert!(
        !ok && out.contains("under way") && out.contains("\"far\""),
        "{out}"
    );
    sqlx::query("DELETE FROM redis_moves")
        .execute(&api.pool)
        .await
        .unwrap();

    // No control plane runs here to stop the tenant: the move waits its stop timeout, is
    // called off, and leaves the project where it was with no hold.
    let mut timed = args.to_vec();
    timed.extend(["--stop-timeout", "1"]);
    let began = std::time::Instant::now();
    let (ok, out) = operator(&api, &timed, "").await;
    assert!(
        !ok && out.contains("called off")
            && out.contains("no control plane confirmed")
            && out.contains("stays on the Redis deployment \"near\""),
        "{out}"
    );
    assert!(began.elapsed() < Duration::from_secs(30));
    assert_eq!(deployment_of(&api, &id).await.as_deref(), Some("near"));
    assert_eq!(holds(&api).await, 0);
    assert!(!audit_text(&api).await.contains("operator.move_project"));

    // Two names for one server and database: refused before anything is held (the move
    // would delete what it copied).
    add(&api, "alias", local_redis(7)).await;
    let (ok, out) = operator(
        &api,
        &["move-project", id.as_str(), "alias", "--history", "drain"],
        "",
    )
    .await;
    assert!(
        !ok && out.contains("did not start") && out.contains("same server and database"),
        "{out}"
    );
    assert_eq!(holds(&api).await, 0);
}

#[tokio::test]
async fn customers_can_neither_choose_nor_see_a_deployment() {
    let api = Api::start().await;
    let token = api.account("curious@example.com").await;
    add(
        &api,
        "first",
        json!({"address": format!("redis://:{PASSWORD}@10.4.0.1:6379")}),
    )
    .await;
    add(
        &api,
        "second",
        json!({"address": format!("redis://:{PASSWORD}@10.4.0.2:6379")}),
    )
    .await;
    // Naming a deployment (or an address) in the creation does nothing: placement decides.
    let a = redis_project(
        &api,
        &token,
        json!({"name": "a", "engine": "redis", "redis_deployment": "second"}),
    )
    .await;
    assert_eq!(deployment_of(&api, &a).await.as_deref(), Some("first"));
    // Nor can the settings point the engine anywhere.
    let (s, body) = api
        .call(
            "PATCH",
            &format!("/v1/projects/{a}"),
            Some(&token),
            Some(json!({"settings": {"engine": {"type": "redis", "redis": {"address": "redis://10.4.0.2:6379"}}}})),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(deployment_of(&api, &a).await.as_deref(), Some("first"));
    // Nothing the customer reads names the deployment or its credentials.
    for path in [
        format!("/v1/projects/{a}"),
        "/v1/projects".to_owned(),
        format!("/v1/projects/{a}/secrets"),
    ] {
        let (s, got) = api.call("GET", &path, Some(&token), None).await;
        assert_eq!(s, 200, "{path}");
        let text = got.to_string();
        for secret in [PASSWORD, "10.4.0.", "first", "sealed:"] {
            assert!(!text.contains(secret), "{path} shows {secret}: {text}");
        }
    }
}
