//! Hostile input against the REST API and the static assets: SQL in every field and id, and
//! dot segments in paths, are plain data or a 404; settings that would make a tenant's process
//! read files of the box are refused.

mod common;

use common::Api;
use serde_json::json;

#[tokio::test]
async fn sql_injection_and_path_traversal_tries_are_plain_data_or_404() {
    let api = Api::start().await;
    let alice = api.account("alice@example.com").await;
    let bob = api.account("bob@example.com").await;
    let bobs = api.project(&bob, "bob app").await;

    // Login with an injection in the email or password: the same 401 as any wrong login.
    for (email, password) in [
        ("' OR '1'='1", "anything-long-enough"),
        ("alice@example.com' --", "anything-long-enough"),
        ("alice@example.com", "' OR '1'='1' --"),
    ] {
        let (s, b) = api
            .call(
                "POST",
                "/v1/tokens",
                None,
                Some(json!({"email": email, "password": password, "name": "x"})),
            )
            .await;
        assert!(s == 401 || s == 400, "{email}: {s} {b}");
    }

    // A project name full of SQL is stored and shown as written.
    let name = "x'); DROP TABLE projects; --";
    let p = api.project(&alice, name).await;
    assert_eq!(p["name"], name);
    let id = p["id"].as_str().unwrap();

    // Ids and names made of SQL or dot segments find nothing.
    let bob_id = bobs["id"].as_str().unwrap();
    for path in [
        format!("/v1/projects/{id}'%20OR%20'1'='1"),
        format!("/v1/projects/{bob_id}'--"),
        "/v1/projects/..%2f..%2f..%2fetc%2fpasswd".to_owned(),
        format!("/v1/projects/{id}/namespaces/..%2f..%2fsecrets"),
        format!("/v1/projects/{id}%2f..%2f{bob_id}/secrets"),
    ] {
        let (s, b) = api.call("GET", &path, Some(&alice), None).await;
        assert_eq!(s, 404, "{path}: {b}");
    }
    let (s, b) = api
        .call(
            "PUT",
            &format!("/v1/projects/{id}/namespaces/..%2fchat"),
            Some(&alice),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "name");
    // Static assets are served by name only.
    for path in ["/static/..%2fCargo.toml", "/static/..%2f..%2fetc%2fpasswd"] {
        let (s, _) = api.call("GET", path, None, None).await;
        assert_eq!(s, 404, "{path}");
    }

    // Everything is still there: both accounts list exactly their own project.
    let (s, list) = api.call("GET", "/v1/projects", Some(&alice), None).await;
    assert_eq!(s, 200);
    assert_eq!(list["projects"].as_array().map(Vec::len), Some(1), "{list}");
    let (_, list) = api.call("GET", "/v1/projects", Some(&bob), None).await;
    assert_eq!(list["projects"][0]["id"], bob_id);
}

/// A hosted project cannot choose its engine (the operator does: standalone, Cluster or
/// Sentinel addresses alike) nor name a TLS file for its process to read, whichever way the
/// settings try; the refusal never carries a file's contents.
#[tokio::test]
async fn a_hosted_project_cannot_set_the_engine_or_name_tls_files() {
    let api = Api::start().await;
    let token = api.account("tls@example.com").await;
    let p = api.project(&token, "tls files").await;
    let id = p["id"].as_str().unwrap();
    let files = json!({"server_ca_pem_file": "/etc/shadow", "cert_pem_file": "/etc/shadow", "key_pem_file": "/etc/shadow"});
    for (settings, field) in [
        (
            json!({"engine": {"type": "redis", "redis": {"address": "rediss://127.0.0.1:6380", "tls": files}}}),
            "settings.engine",
        ),
        (
            // Nor point the engine at a cluster or at Sentinels of the operator's network.
            json!({"engine": {"type": "redis", "redis": {"cluster_address": ["10.0.0.1:7000"]}}}),
            "settings.engine",
        ),
        (
            json!({"engine": {"type": "redis", "redis": {"sentinel_address": ["127.0.0.1:26379"], "sentinel_master_name": "mymaster"}}}),
            "settings.engine",
        ),
        (
            json!({"engine": {"type": "redis", "redis": {"address": "redis+sentinel://127.0.0.1:26379/mymaster"}}}),
            "settings.engine",
        ),
        (
            json!({"server_ca_pem_file": "/etc/shadow"}),
            "settings.server_ca_pem_file",
        ),
        (
            json!({"cert_pem_file": "/etc/shadow"}),
            "settings.cert_pem_file",
        ),
        (
            // Hosted projects have consumers; a TLS option naming a file is refused on its path.
            json!({"consumers": [{"name": "s", "type": "redis_stream", "redis_stream": {"tls": files}}]}),
            "settings.consumers[0].redis_stream.tls.cert_pem_file",
        ),
    ] {
        let (s, b) = api.patch_settings(&token, id, settings.clone()).await;
        assert_eq!(s, 400, "{settings}: {b}");
        assert_eq!(b["error"]["field"], field, "{settings}: {b}");
        assert!(!b.to_string().contains("root:"), "{b}");
    }
    let (_, b) = api
        .patch_settings(&token, id, json!({"server_ca_pem_file": "/etc/shadow"}))
        .await;
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not available to hosted projects"), "{b}");
}

/// No project gets a slug the operator may use for a host of its own (the dashboard's
/// `app.<domain>`, `www`, `api`, …), whatever it is named: it gets a suffix instead, so it can
/// never answer for that host under the tenant-host pattern.
#[tokio::test]
async fn a_project_named_like_a_reserved_host_never_gets_that_slug() {
    let api = Api::start().await;
    let mallory = api.account("mallory@example.com").await;
    for (name, reserved) in [
        ("app", "app"),
        ("App!", "app"),
        ("  WWW ", "www"),
        ("dashboard", "dashboard"),
        ("api", "api"),
    ] {
        let p = api.project(&mallory, name).await;
        let slug = p["slug"].as_str().unwrap();
        assert_ne!(slug, reserved, "{name:?} got a reserved slug");
        assert!(
            slug.starts_with(&format!("{reserved}-")),
            "{name:?}: {slug}"
        );
        // Out of the way of the plan's project count.
        assert_eq!(
            api.delete_project(&mallory, p["id"].as_str().unwrap())
                .await,
            204
        );
    }
    // An ordinary name keeps its slug.
    let p = api.project(&mallory, "apps are fine").await;
    assert_eq!(p["slug"], "apps-are-fine");
}
