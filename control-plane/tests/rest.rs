//! The REST API against a real Postgres database per test: accounts and tokens, projects and
//! their endpoints, API keys shown once, namespace validation, config versions, secret
//! rotation, audit, isolation between accounts, and the OpenAPI document.

use serde_json::{json, Value};

mod common;

use common::Api;

#[tokio::test]
async fn signup_and_tokens_refuse_bad_input_and_do_not_reveal_which_part_was_wrong() {
    let api = Api::start().await;
    let (s, b) = api
        .signup(json!({"email": "x", "password": "a long password"}))
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("email")));
    let (s, b) = api
        .signup(json!({"email": "a@b.co", "password": "short"}))
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("password")));
    api.account("Ann@Example.com").await;
    let (s, _) = api
        .signup(json!({"email": "ann@example.com", "password": "a long password"}))
        .await;
    assert_eq!(s, 409);
    let (s1, wrong_pw) = api
        .login(json!({"email": "ann@example.com", "password": "not the password", "name": "x"}))
        .await;
    let (s2, no_user) = api
        .login(json!({"email": "bob@example.com", "password": "not the password", "name": "x"}))
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong_pw, no_user);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM accounts")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"));
    let (s, _) = api.projects(Some("rtr_nope")).await;
    assert_eq!(s, 401);
    let (s, _) = api.projects(None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn management_tokens_are_stored_hashed_and_can_be_revoked() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM management_tokens")
        .fetch_all(&api.pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec![rotor_control_plane::secrets::sha256_hex(&token)]
    );
    let list = api.tokens(&token).await;
    let id = list["tokens"][0]["id"].as_str().unwrap().to_owned();
    assert!(list["tokens"][0].get("token").is_none());
    assert_eq!(api.revoke_token(&token, &id).await, 204);
    let (s, _) = api.projects(Some(&token)).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_project_has_a_slug_endpoints_and_a_token_secret() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "My Chat App").await;
    assert!(p["id"].as_str().unwrap().starts_with("prj_"));
    assert_eq!(p["slug"], "my-chat-app");
    assert_eq!(
        p["endpoints"]["websocket"],
        "wss://rotor.example/t/my-chat-app/connection/websocket"
    );
    assert_eq!(
        p["endpoints"]["api"],
        "https://rotor.example/t/my-chat-app/api"
    );
    let again = api.project(&token, "My Chat App").await;
    assert_ne!(again["slug"], p["slug"]);
    let id = p["id"].as_str().unwrap();
    let s = api.secrets(&token, id).await;
    assert_eq!(s["token_hmac_secret"].as_str().unwrap().len(), 64);
    let (s, b) = api.create_project(&token, json!({"name": ""})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("name")));
    assert_eq!(api.delete_project(&token, id).await, 204);
    let (s, _) = api.get_project(&token, id).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn another_accounts_project_is_a_404_everywhere() {
    let api = Api::start().await;
    let alice = api.account("alice@example.com").await;
    let bob = api.account("bob@example.com").await;
    let p = api.project(&alice, "alice app").await;
    let id = p["id"].as_str().unwrap();
    for (method, path, body) in [
        ("GET", format!("/v1/projects/{id}"), None),
        (
            "PATCH",
            format!("/v1/projects/{id}"),
            Some(json!({"name": "stolen"})),
        ),
        ("DELETE", format!("/v1/projects/{id}"), None),
        ("GET", format!("/v1/projects/{id}/secrets"), None),
        (
            "POST",
            format!("/v1/projects/{id}/secrets/rotate"),
            Some(json!({})),
        ),
        ("GET", format!("/v1/projects/{id}/api-keys"), None),
        (
            "POST",
            format!("/v1/projects/{id}/api-keys"),
            Some(json!({"name": "k"})),
        ),
        ("GET", format!("/v1/projects/{id}/namespaces"), None),
        (
            "PUT",
            format!("/v1/projects/{id}/namespaces/chat"),
            Some(json!({})),
        ),
        ("GET", format!("/v1/projects/{id}/audit"), None),
        ("GET", "/v1/projects/prj_doesnotexist".to_owned(), None),
        ("GET", "/v1/projects/key_wrongkind".to_owned(), None),
    ] {
        let (s, b) = api.call(method, &path, Some(&bob), body).await;
        assert_eq!(s, 404, "{method} {path}: {b}");
        assert_eq!(b["error"]["code"], "not_found");
    }
    let (_, list) = api.projects(Some(&bob)).await;
    assert_eq!(list["projects"], json!([]));
    assert_eq!(api.version(id).await, 1, "nothing changed");
}

#[tokio::test]
async fn api_keys_are_shown_once_and_stored_only_as_hashes() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "keys").await;
    let id = p["id"].as_str().unwrap();
    let (s, k) = api.create_api_key(&token, id, "backend").await;
    assert_eq!(s, 201);
    let key = k["key"].as_str().unwrap();
    assert!(key.starts_with("rk_"));
    let stored: String = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(stored, rotor_control_plane::secrets::sha256_hex(key));
    let list = api.api_keys(&token, id).await;
    assert_eq!(list["api_keys"][0]["name"], "backend");
    assert!(list["api_keys"][0].get("key").is_none());
    let kid = k["id"].as_str().unwrap();
    assert_eq!(api.delete_api_key(&token, id, kid).await, 204);
    assert_eq!(api.delete_api_key(&token, id, kid).await, 404);
}

#[tokio::test]
async fn namespaces_are_validated_field_by_field_and_each_change_bumps_the_version_once() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "ns").await;
    let id = p["id"].as_str().unwrap();
    let v0 = api.version(id).await;
    let (s, b) = api
        .put_namespace(&token, id, "chat", json!({"history_size": 10}))
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("history_ttl")),
        "{b}"
    );
    let (s, b) = api
        .put_namespace(&token, id, "chat", json!({"presense": true}))
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("presense")));
    let (s, b) = api
        .put_namespace(&token, id, "chat", json!({"history_ttl": "5 days"}))
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("history_ttl"))
    );
    let (s, b) = api.put_namespace(&token, id, "x", json!({})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("name")));
    assert_eq!(api.version(id).await, v0, "refused changes do not bump");

    let (s, b) = api
        .put_namespace(
            &token,
            id,
            "chat",
            json!({"presence": true, "history_size": 10, "history_ttl": "300s"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["history_ttl"], "5m0s");
    assert_eq!(api.version(id).await, v0 + 1);
    let (s, b) = api
        .put_namespace(&token, id, "chat", json!({"presence": false}))
        .await;
    assert_eq!(s, 200);
    assert!(b.get("presence").is_none(), "defaults are omitted");
    assert_eq!(api.version(id).await, v0 + 2);
    let list = api.namespaces(&token, id).await;
    assert_eq!(list["namespaces"].as_array().unwrap().len(), 1);
    assert_eq!(api.delete_namespace(&token, id, "chat").await, 204);
    assert_eq!(api.version(id).await, v0 + 3);
    let (s, _) = api.get_namespace(&token, id, "chat").await;
    assert_eq!(s, 404);
    let (_, audit) = api.audit(&token, id).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "namespace.delete",
            "namespace.update",
            "namespace.create",
            "project.create"
        ]
    );
}

#[tokio::test]
async fn rotating_the_secret_keeps_the_old_one_only_with_a_grace_period() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "rot").await;
    let id = p["id"].as_str().unwrap();
    let first = api.secrets(&token, id).await;
    let second = api
        .rotate_secret(&token, id, Some(json!({"grace_seconds": 300})))
        .await;
    assert_ne!(first["token_hmac_secret"], second["token_hmac_secret"]);
    let config = api.compile(id, None).await.config;
    assert_eq!(
        config.client.token.hmac_secret_key,
        second["token_hmac_secret"].as_str().unwrap()
    );
    assert_eq!(
        config.client.token.hmac_previous_secret_key,
        first["token_hmac_secret"].as_str().unwrap()
    );
    let third = api.rotate_secret(&token, id, None).await;
    let compiled = api.compile(id, None).await;
    let (config, version) = (compiled.config, compiled.version);
    assert_eq!(
        config.client.token.hmac_secret_key,
        third["token_hmac_secret"].as_str().unwrap()
    );
    assert!(
        config.client.token.hmac_previous_secret_key.is_empty(),
        "no grace: old tokens stop at once"
    );
    assert_eq!(config.rotor.config_version as i64, version);
    let audit: Vec<Value> =
        sqlx::query_scalar("SELECT after FROM audit_log WHERE action = 'secret.rotate'")
            .fetch_all(&api.pool)
            .await
            .unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        !text.contains(third["token_hmac_secret"].as_str().unwrap()),
        "no secrets in the audit log"
    );
}

/// The attack: a hosted project's clients reach its data plane through the edge, which passes
/// their request headers through, so a project that authenticated connections by a header
/// (or accepted unsigned tokens) would let any stranger connect as any of its users. Neither
/// option can be set for a hosted project, whichever way the settings try to name it.
#[tokio::test]
async fn a_hosted_project_cannot_authenticate_by_header_or_skip_token_signatures() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "hosted").await;
    let id = p["id"].as_str().unwrap();
    for (settings, field) in [
        (
            json!({"user_id_http_header": "X-User-Id"}),
            "settings.user_id_http_header",
        ),
        (
            json!({"insecure_skip_token_signature_verify": true}),
            "settings.insecure_skip_token_signature_verify",
        ),
        (
            json!({"client": {"user_id_http_header": "X-User-Id"}}),
            "settings.client",
        ),
        (
            json!({"client_proxy": {"user_id_http_header": "X-User-Id"}}),
            "settings.client_proxy.user_id_http_header",
        ),
    ] {
        let (s, b) = api.patch_settings(&token, id, settings.clone()).await;
        assert_eq!(s, 400, "{settings}: {b}");
        assert_eq!(b["error"]["field"], field, "{settings}: {b}");
    }
    let (s, b) = api
        .patch_settings(&token, id, json!({"user_id_http_header": "X-User-Id"}))
        .await;
    assert_eq!(s, 400);
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not available to hosted projects"),
        "the refusal says why: {b}"
    );
    let config = api.compile(id, None).await.config;
    assert!(config.standalone_only_options_set().is_empty());
}

/// A broker's address is reached from the service's own network: a hosted project that could
/// set `broker` could point it at the box's NATS and read other tenants' subjects.
#[tokio::test]
async fn a_hosted_project_cannot_set_a_broker() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "hosted").await;
    let id = p["id"].as_str().unwrap();
    let broker = json!({"enabled": true, "type": "nats", "nats": {"url": "nats://127.0.0.1:4222"}});
    let (s, b) = api
        .patch_settings(&token, id, json!({"broker": broker}))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "settings.broker", "{b}");
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not available to hosted projects"), "{b}");
}

#[tokio::test]
async fn settings_are_validated_and_compiled_into_the_tenant_config() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "settings").await;
    let id = p["id"].as_str().unwrap();
    let (s, b) = api.patch_settings(&token, id, json!({"colour": 1})).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("settings.colour"))
    );
    let settings = json!({"allowed_origins": ["https://app.example.com"], "without_namespace": {"allow_subscribe_for_client": true}});
    let (s, b) = api.patch_settings(&token, id, settings.clone()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["settings"], settings);
    let config = api.compile(id, None).await.config;
    assert_eq!(
        config.client.allowed_origins,
        vec!["https://app.example.com"]
    );
    assert!(config.channel.without_namespace.allow_subscribe_for_client);
    // The dashboard's own origin joins a customer's list so its debug console can connect.
    let origin = rotor_control_plane::tenant::origin_of("https://Rotor.example.net/base/");
    assert_eq!(origin.as_deref(), Some("https://rotor.example.net"));
    let config = api.compile(id, origin.as_deref()).await.config;
    assert_eq!(
        config.client.allowed_origins,
        vec!["https://app.example.com", "https://rotor.example.net"]
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_every_channel_option() {
    let api = Api::start().await;
    let (s, doc) = api.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/projects/{id}/namespaces/{name}"]["put"].is_object());
    let props = doc["components"]["schemas"]["ChannelOptions"]["properties"]
        .as_object()
        .unwrap();
    for name in rotor_tenant_config::CHANNEL_OPTION_NAMES {
        assert!(props.contains_key(*name), "{name} missing");
    }
}

#[tokio::test]
async fn usage_readings_become_exact_minute_rows_and_are_never_double_counted() {
    use rotor_control_plane::usage::{record, NamespaceSnapshot, Snapshot};
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "usage").await;
    let id = rotor_control_plane::ids::ProjectId(p["id"].as_str().unwrap().to_owned());
    let at = chrono::Utc::now();
    let mut s = Snapshot {
        node: "n1".into(),
        connections: 4,
        messages_published: 10,
        ..Default::default()
    };
    s.api_calls.insert("publish".into(), 6);
    s.namespaces.insert(
        "chat".into(),
        NamespaceSnapshot {
            published_client: 4,
            published_api: 6,
            delivered: 40,
            subscriptions: 4,
            connections: 3,
        },
    );
    record(&api.pool, &id, &s, at).await.unwrap();
    // The same reading again (e.g. after a control-plane restart) adds nothing.
    record(&api.pool, &id, &s, at).await.unwrap();
    s.messages_published = 13;
    s.namespaces.get_mut("chat").unwrap().published_api = 9;
    s.namespaces.get_mut("chat").unwrap().delivered = 52;
    record(&api.pool, &id, &s, at).await.unwrap();
    let (_, u) = api.usage(&token, &id.0, "").await;
    assert_eq!(u["step"], "minute");
    let point = &u["points"][0];
    assert_eq!(
        (
            point["published"].as_i64(),
            point["api_calls"].as_i64(),
            point["connections"].as_i64()
        ),
        (Some(13), Some(6), Some(4))
    );
    let (_, chat) = api.usage(&token, &id.0, "?namespace=chat").await;
    assert_eq!(chat["points"][0]["delivered"], 52);
    assert_eq!(chat["points"][0]["published"], 13);
    assert_eq!(u["namespaces"], json!(["chat"]));
    let (s, b) = api.usage(&token, &id.0, "?step=week").await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("step")));
}

#[tokio::test]
async fn plan_limits_are_checked_by_the_control_plane_and_compiled_for_the_tenant() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "limits").await;
    let id = p["id"].as_str().unwrap();
    for n in 0..5 {
        let (s, _) = api.create_api_key(&token, id, &format!("k{n}")).await;
        assert_eq!(s, 201);
    }
    let (s, b) = api.create_api_key(&token, id, "k6").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("plan_limit")),
        "free allows 5 keys"
    );
    let (s, b) = api
        .put_namespace(
            &token,
            id,
            "big",
            json!({"history_size": 101, "history_ttl": "60s"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("history_size"))
    );
    let (s, _) = api
        .put_namespace(
            &token,
            id,
            "big",
            json!({"history_size": 100, "history_ttl": "60s"}),
        )
        .await;
    assert_eq!(s, 201);
    let config = api.compile(id, None).await.config;
    assert_eq!(config.client.connection_limit, 200);
    assert_eq!(config.rotor.publish_rate_limit, 100);
    // Plans are the operator's (a customer's PATCH of "plan" is refused:
    // plan_bounds.rs).
    rotor_control_plane::operator::set_plan(
        &api.pool,
        &rotor_control_plane::operator::Operator {
            name: "test".into(),
        },
        id,
        "pro",
    )
    .await
    .unwrap();
    let config = api.compile(id, None).await.config;
    assert_eq!(config.client.connection_limit, 10000);
    assert_eq!(config.rotor.publish_rate_limit, 5000);
    let (s, b) = api
        .patch_project(&token, id, json!({"plan": "platinum"}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("operator_only"))
    );
}

#[tokio::test]
async fn answers_carrying_secrets_are_never_cached() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "nocache").await;
    let id = p["id"].as_str().unwrap();
    let sent = |method: &str, path: String| {
        api.http
            .request(method.parse().unwrap(), format!("{}{path}", api.base))
            .bearer_auth(&token)
    };
    for request in [
        sent("GET", format!("/v1/projects/{id}/secrets")),
        sent("POST", format!("/v1/projects/{id}/api-keys")).json(&json!({"name": "k"})),
        sent("GET", "/v1/tokens".into()),
        sent("GET", format!("/v1/projects/{id}")),
        // An error answer too.
        sent("GET", "/v1/projects/prj_missing".into()),
    ] {
        let resp = request.send().await.unwrap();
        let status = resp.status();
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{status} {}",
            resp.url()
        );
    }
}
