//! The dashboard's second pass against a real database, request by request: a project's
//! settings page (saved through POST/redirect/GET, mistakes in the form's words, endpoint
//! tests that never reach this machine), its audit log (newest first, paged, the owner's
//! only), and API keys (unique names, scopes sent to the tenant, prefixes, revocation only
//! after its confirmation step, last use as tenants report it).

mod auth;
mod common;

use std::collections::BTreeMap;

use auth::*;
use rotor_control_plane::ids::ProjectId;
use serde_json::{json, Value};

#[tokio::test]
async fn another_account_gets_404_for_a_projects_settings_audit_log_and_key_pages_and_sees_none_of_its_entries(
) {
    let app = App::start("https://rotor.example").await;
    let (mut ann, project, ann_csrf) = owner(&app, "127.0.0.11", "ann@example.com").await;
    let page = ann
        .post(
            &format!("/projects/{project}/keys"),
            &[("csrf", &ann_csrf), ("name", "backend")],
        )
        .await;
    assert_eq!(page.status, 303);
    let key: String = sqlx::query_scalar("SELECT id FROM api_keys WHERE project_id = $1")
        .bind(&project)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // The owner sees the audit log, with the key's creation in words.
    let page = ann.get(&format!("/projects/{project}/audit")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Created the API key “backend”"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Created the project “Shop”"));
    assert!(page.body.contains(">You<"));

    // And in the account's log, with the project it concerns.
    let page = ann.get("/account/audit").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Created the API key “backend”"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("class=\"audit-project\">Shop<"),
        "{}",
        page.body
    );

    let (mut bob, _, bob_csrf) = owner(&app, "127.0.0.12", "bob@example.com").await;
    let page = bob.get("/account/audit").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Created the project “Shop”"),
        "Bob's own project"
    );
    assert!(!page.body.contains("backend"), "none of Ann's entries");
    for path in [
        format!("/projects/{project}/audit"),
        format!("/projects/{project}/audit?before=999999"),
        format!("/projects/{project}/settings"),
        format!("/projects/{project}/keys/{key}/revoke"),
    ] {
        let page = bob.get(&path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(!page.body.contains("backend"), "{path}");
    }
    for (path, form) in [
        (
            format!("/projects/{project}/settings"),
            vec![("csrf", bob_csrf.as_str()), ("name", "Mine")],
        ),
        (
            format!("/projects/{project}/settings/test/connect"),
            vec![
                ("csrf", bob_csrf.as_str()),
                ("connect_endpoint", "https://example.com/"),
            ],
        ),
        (
            format!("/projects/{project}/keys/{key}/revoke"),
            vec![("csrf", bob_csrf.as_str()), ("confirm", "yes")],
        ),
    ] {
        let page = bob.post(&path, &form).await;
        assert_eq!(page.status, 404, "{path}");
    }
    let name: String = sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
        .bind(&project)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(name, "Shop");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE project_id = $1")
        .bind(&project)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys, 1);
    // Nor through the REST API's audit trail, nor does Bob's own log show Ann's entries.
    let page = bob.get("/projects").await;
    let bob_project = page
        .body
        .split("/projects/prj_")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(|s| format!("prj_{s}"))
        .unwrap();
    let page = bob.get(&format!("/projects/{bob_project}/audit")).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("backend"));
    let rows = rotor_control_plane::audit::page(
        &app.pool,
        &rotor_control_plane::ids::AccountId(
            sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'bob@example.com'")
                .fetch_one(&app.pool)
                .await
                .unwrap(),
        ),
        Some(&ProjectId(project.clone())),
        None,
        50,
    )
    .await
    .unwrap();
    assert!(
        rows.is_empty(),
        "Ann's entries under Bob's account: {rows:?}"
    );
}

#[tokio::test]
async fn the_audit_log_pages_newest_first() {
    let app = App::start("https://rotor.example").await;
    let (mut b, project, csrf) = owner(&app, "127.0.0.13", "pages@example.com").await;
    for i in 0..30 {
        let page = b
            .post(
                &format!("/projects/{project}/settings"),
                &[("csrf", &csrf), ("name", &format!("Shop {i}"))],
            )
            .await;
        assert_eq!(page.status, 303);
    }
    let first = b.get(&format!("/projects/{project}/audit")).await;
    assert!(first.body.contains("Renamed the project to “Shop 29”"));
    assert!(
        !first.body.contains("Created the project"),
        "page 1 is the newest 25"
    );
    let newest = first.body.find("to “Shop 29”").unwrap();
    let older = first.body.find("to “Shop 28”").unwrap();
    assert!(newest < older, "newest first");
    let next = first
        .body
        .split("id=\"audit-older\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to older entries")
        .to_owned();
    let second = b.get(&next).await;
    assert_eq!(second.status, 200);
    assert!(second.body.contains("Created the project “Shop”"));
    assert!(!second.body.contains("to “Shop 29”"));
    assert!(second.body.contains("to “Shop 0”"));
    // A malformed cursor shows the first page.
    let page = b
        .get(&format!("/projects/{project}/audit?before=nope"))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Renamed the project to “Shop 29”"));
}

#[tokio::test]
async fn settings_are_saved_by_post_redirect_get_and_mistakes_come_back_in_words() {
    let app = App::start("https://rotor.example").await;
    let (mut b, project, csrf) = owner(&app, "127.0.0.14", "settings@example.com").await;
    let path = format!("/projects/{project}/settings");
    let page = b.get(&path).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Test this endpoint"));
    let version = || {
        let pool = app.pool.clone();
        let project = project.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT config_version FROM projects WHERE id = $1")
                .bind(&project)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let v0 = version().await;
    let page = b
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("name", "Shop EU"),
                (
                    "origins",
                    "https://shop.example.com\r\nhttps://admin.example.com",
                ),
                ("anonymous", "on"),
                ("connect_enabled", "on"),
                ("connect_endpoint", "https://backend.example.com/connect"),
                ("connect_timeout", "2"),
                ("rpc_enabled", "on"),
                ("rpc_endpoint", "https://backend.example.com/rpc"),
            ],
        )
        .await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some(path.as_str()))
    );
    let (name, settings): (String, Value) =
        sqlx::query_as("SELECT name, settings FROM projects WHERE id = $1")
            .bind(&project)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(name, "Shop EU");
    assert_eq!(
        settings["allowed_origins"],
        json!(["https://shop.example.com", "https://admin.example.com"])
    );
    assert_eq!(settings["allow_anonymous_connect_without_token"], true);
    assert_eq!(
        settings["client_proxy"]["connect"],
        json!({"enabled": true, "endpoint": "https://backend.example.com/connect", "timeout": "2s"})
    );
    assert_eq!(settings["rpc"]["without_namespace"]["proxy_enabled"], true);
    assert_eq!(version().await, v0 + 1);
    let page = b.get(&path).await;
    assert_eq!(
        text_of(&page.body, "settings-notice")
            .as_deref()
            .map(|t| t.starts_with("Settings saved")),
        Some(true)
    );
    assert!(page
        .body
        .contains("value=\"https://backend.example.com/connect\""));
    // A reload shows the page again and changes nothing.
    let page = b.get(&path).await;
    assert!(text_of(&page.body, "settings-notice").is_none());
    assert_eq!(version().await, v0 + 1);

    // A mistake: nothing is saved, the page says what is wrong and keeps what was typed.
    let page = b
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("name", "Shop EU"),
                ("origins", "shop.example.com"),
                ("connect_enabled", "on"),
                ("connect_endpoint", "https://backend.example.com/connect"),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    assert!(page.location.unwrap_or_default().ends_with("#f-origins"));
    let page = b.get(&path).await;
    let error = text_of(&page.body, "settings-error").unwrap_or_default();
    assert!(
        error.contains("“shop.example.com” is not an origin"),
        "{error}"
    );
    assert!(
        page.body.contains(">shop.example.com</textarea>"),
        "what was typed is kept"
    );
    let page = b
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("name", "Shop EU"),
                ("connect_enabled", "on"),
                ("connect_endpoint", "grpc://backend.example.com"),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = b.get(&path).await;
    let error = text_of(&page.body, "settings-error").unwrap_or_default();
    assert!(error.starts_with("Connect proxy URL:"), "{error}");
    assert!(
        !error.contains('`') && !error.contains("client.proxy"),
        "{error}"
    );
    assert_eq!(version().await, v0 + 1, "nothing saved");
    // Without the CSRF token nothing happens.
    let page = b.post(&path, &[("name", "Hijacked")]).await;
    assert_eq!(page.status, 403);
}

#[tokio::test]
async fn testing_an_endpoint_never_reaches_this_machine_in_hosted_mode_and_says_why() {
    let app = App::start("https://rotor.example").await;
    let (mut b, project, csrf) = owner(&app, "127.0.0.15", "probe@example.com").await;
    // Something that would answer on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
    for url in [
        format!("http://127.0.0.1:{port}/connect"),
        "http://localhost/connect".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]/connect".to_owned(),
    ] {
        let page = b
            .post(
                &format!("/projects/{project}/settings/test/connect"),
                &[
                    ("csrf", &csrf),
                    ("name", "Shop"),
                    ("connect_endpoint", &url),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "{url}");
        assert!(page
            .location
            .unwrap_or_default()
            .ends_with("#proxy-connect"));
        let page = b.get(&format!("/projects/{project}/settings")).await;
        let result = text_of(&page.body, "probe-connect").unwrap_or_default();
        assert!(result.contains("could not be reached"), "{url}: {result}");
        assert!(
            result.contains("not public") || result.contains("is not allowed"),
            "{url}: {result}"
        );
        // The typed URL is still in the form, and nothing was saved.
        assert!(page.body.contains(&format!("value=\"{url}\"")), "{url}");
    }
    assert!(!accepted.is_finished(), "the loopback listener was reached");
    accepted.abort();
    let settings: Value = sqlx::query_scalar("SELECT settings FROM projects WHERE id = $1")
        .bind(&project)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(settings, json!({}));
}

#[tokio::test]
async fn key_names_are_unique_per_project_and_the_dashboard_says_so() {
    let api = common::Api::start().await;
    let token = api.account("keys@example.com").await;
    let project = api.project(&token, "app").await;
    let other = api.project(&token, "other").await;
    let id = project["id"].as_str().unwrap();
    let path = format!("/v1/projects/{id}/api-keys");
    let (s, first) = api
        .call(
            "POST",
            &path,
            Some(&token),
            Some(json!({"name": "backend"})),
        )
        .await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["scope"], "all");
    let (s, again) = api
        .call(
            "POST",
            &path,
            Some(&token),
            Some(json!({"name": " backend "})),
        )
        .await;
    assert_eq!(s, 409, "{again}");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already has a key called \"backend\""),
        "{again}"
    );
    // Another project may use the name.
    let other_path = format!("/v1/projects/{}/api-keys", other["id"].as_str().unwrap());
    let (s, _) = api
        .call(
            "POST",
            &other_path,
            Some(&token),
            Some(json!({"name": "backend"})),
        )
        .await;
    assert_eq!(s, 201);
    // The database holds the rule too.
    let dup = sqlx::query("INSERT INTO api_keys (id, project_id, name, key_hash) VALUES ('key_dup', $1, 'backend', 'x')")
        .bind(id)
        .execute(&api.pool)
        .await;
    assert!(
        dup.is_err(),
        "a duplicate name is refused by the constraint"
    );
    let (s, bad) = api
        .call(
            "POST",
            &path,
            Some(&token),
            Some(json!({"name": "ro", "scope": "read"})),
        )
        .await;
    assert_eq!((s, bad["error"]["field"].as_str()), (400, Some("scope")));
}

#[tokio::test]
async fn a_duplicate_key_name_comes_back_to_the_keys_page_with_what_was_typed() {
    let app = App::start("https://rotor.example").await;
    let (mut b, project, csrf) = owner(&app, "127.0.0.16", "dup@example.com").await;
    let path = format!("/projects/{project}/keys");
    let page = b
        .post(
            &path,
            &[("csrf", &csrf), ("name", "ci"), ("scope", "publish")],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = b.get(&path).await;
    assert!(page.body.contains("id=\"new-api-key\""));
    let page = b
        .post(
            &path,
            &[("csrf", &csrf), ("name", "ci"), ("scope", "publish")],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = b.get(&path).await;
    let error = text_of(&page.body, "keys-error").unwrap_or_default();
    assert!(
        error.starts_with("This project already has a key called"),
        "{error}"
    );
    assert!(page.body.contains("value=\"ci\""), "the name typed is kept");
    assert!(
        page.body.contains("<option value=\"publish\" selected>"),
        "and the access chosen"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE project_id = $1")
        .bind(&project)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn keys_show_a_prefix_and_scope_reach_the_tenant_and_revoking_takes_a_confirmation() {
    let app = App::start("https://rotor.example").await;
    let (mut b, project, csrf) = owner(&app, "127.0.0.17", "scopes@example.com").await;
    let path = format!("/projects/{project}/keys");
    let page = b
        .post(
            &path,
            &[("csrf", &csrf), ("name", "publisher"), ("scope", "publish")],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = b.get(&path).await;
    let key = text_of(&page.body, "new-api-key").unwrap();
    assert!(key.starts_with("rk_") && key.len() > 20);
    // After the reload the key is gone; its first characters stay, never the rest.
    let page = b.get(&path).await;
    assert!(!page.body.contains(&key));
    assert!(
        page.body.contains(&format!("{}…", &key[..10])),
        "{}",
        page.body
    );
    assert!(!page.body.contains(&key[..11]));
    assert!(page.body.contains("Publish only"));
    let (key_id, prefix, scope): (String, String, String) =
        sqlx::query_as("SELECT id, prefix, scope FROM api_keys WHERE project_id = $1")
            .bind(&project)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((prefix.as_str(), scope.as_str()), (&key[..10], "publish"));
    // The tenant gets the key's id, hash and scope.
    let compiled =
        rotor_control_plane::tenant::compile(&app.pool, &ProjectId(project.clone()), None, None)
            .await
            .unwrap();
    let keys = &compiled.config.http_api.keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, key_id);
    assert_eq!(
        keys[0].sha256,
        rotor_control_plane::secrets::sha256_hex(&key)
    );
    assert_eq!(keys[0].scope, rotor_tenant_config::ApiKeyScope::Publish);
    assert!(compiled.config.http_api.key_hashes.is_empty());

    // Revoking: the link opens a confirmation page; a POST without the confirmation revokes
    // nothing and goes there.
    let confirm = format!("/projects/{project}/keys/{key_id}/revoke");
    assert!(page.body.contains(&format!("href=\"{confirm}\"")));
    assert!(
        !page.body.contains("data-confirm"),
        "no JavaScript confirm()"
    );
    let page = b.get(&confirm).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Revoke the key “publisher”?"));
    let page = b.post(&confirm, &[("csrf", &csrf)]).await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some(confirm.as_str()))
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE project_id = $1")
        .bind(&project)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    let page = b
        .post(&confirm, &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some(path.as_str()))
    );
    let page = b.get(&path).await;
    assert!(page
        .body
        .contains("Key revoked: requests using “publisher”"));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE project_id = $1")
        .bind(&project)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    // The confirmation page of a revoked key is gone too; the audit log names the key.
    assert_eq!(b.get(&confirm).await.status, 404);
    let page = b.get(&format!("/projects/{project}/audit")).await;
    assert!(page.body.contains("Revoked the API key “publisher”"));
    assert!(page
        .body
        .contains("Created the API key “publisher” (publish only)"));
}

#[tokio::test]
async fn reported_key_use_moves_last_used_forward_only_for_the_projects_own_keys() {
    let api = common::Api::start().await;
    let token = api.account("used@example.com").await;
    let mine = api.project(&token, "mine").await;
    let theirs = api.project(&token, "theirs").await;
    let mine_id = mine["id"].as_str().unwrap();
    let theirs_id = theirs["id"].as_str().unwrap();
    let (_, a) = api
        .call(
            "POST",
            &format!("/v1/projects/{mine_id}/api-keys"),
            Some(&token),
            Some(json!({"name": "a"})),
        )
        .await;
    let (_, b) = api
        .call(
            "POST",
            &format!("/v1/projects/{theirs_id}/api-keys"),
            Some(&token),
            Some(json!({"name": "b"})),
        )
        .await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let b_id = b["id"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now().timestamp();
    let minute = now - now % 60;
    let project = ProjectId(mine_id.to_owned());
    let mut used = BTreeMap::new();
    used.insert(a_id.clone(), minute);
    // Another project's key named in this project's report is left alone.
    used.insert(b_id.clone(), minute);
    used.insert("key_unknown".to_owned(), minute);
    let updated = rotor_control_plane::usage::record_key_use(&api.pool, &project, &used)
        .await
        .unwrap();
    assert_eq!(updated, 1);
    let last = |id: String| {
        let pool = api.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
                "SELECT last_used_at FROM api_keys WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        last(a_id.clone()).await.map(|t| t.timestamp()),
        Some(minute)
    );
    assert_eq!(last(b_id.clone()).await, None);
    // An older report does not move it back; a time in the future is held to now.
    let mut older = BTreeMap::new();
    older.insert(a_id.clone(), minute - 3600);
    rotor_control_plane::usage::record_key_use(&api.pool, &project, &older)
        .await
        .unwrap();
    assert_eq!(
        last(a_id.clone()).await.map(|t| t.timestamp()),
        Some(minute)
    );
    let mut future = BTreeMap::new();
    future.insert(a_id.clone(), now + 86_400);
    rotor_control_plane::usage::record_key_use(&api.pool, &project, &future)
        .await
        .unwrap();
    let held = last(a_id.clone()).await.unwrap().timestamp();
    assert!(
        held <= chrono::Utc::now().timestamp() + 1 && held >= now - 1,
        "{held} vs {now}"
    );
    // The REST API shows it, with the prefix and scope.
    let (_, list) = api
        .call(
            "GET",
            &format!("/v1/projects/{mine_id}/api-keys"),
            Some(&token),
            None,
        )
        .await;
    let k = &list["api_keys"][0];
    assert!(k["last_used_at"].is_string(), "{list}");
    assert_eq!(k["scope"], "all");
    assert_eq!(k["prefix"].as_str().unwrap().len(), 10);
    assert!(k.get("key").is_none() && k.get("key_hash").is_none());
}

#[tokio::test]
async fn usage_readings_of_many_projects_are_metered_in_one_batch_each_against_its_own_cursor() {
    use rotor_control_plane::usage::{record_many, NamespaceSnapshot, Snapshot};
    let api = common::Api::start().await;
    let token = api.account("batched@example.com").await;
    let a = ProjectId(
        api.project(&token, "batch-a").await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let b = ProjectId(
        api.project(&token, "batch-b").await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let reading = |node: &str, published: u64, connections: u64| {
        let mut s = Snapshot {
            node: node.into(),
            connections,
            messages_published: published,
            ..Default::default()
        };
        s.namespaces.insert(
            "chat".into(),
            NamespaceSnapshot {
                published_api: published,
                ..Default::default()
            },
        );
        s
    };
    let totals = |project: ProjectId| {
        let pool = api.pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT COALESCE(SUM(published), 0)::BIGINT, COALESCE(MAX(connections), 0)::BIGINT \
                 FROM usage_minute WHERE project_id = $1 AND namespace = '*'",
            )
            .bind(project.as_str())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let at = chrono::Utc::now();
    record_many(
        &api.pool,
        &[
            (a.clone(), reading("n1", 5, 2)),
            (b.clone(), reading("n2", 3, 7)),
        ],
        at,
    )
    .await
    .unwrap();
    assert_eq!(totals(a.clone()).await, (5, 2));
    assert_eq!(totals(b.clone()).await, (3, 7));
    // Growth of the same process adds the difference; a new process (another node) counts
    // from zero; a project missing from the batch is untouched.
    record_many(&api.pool, &[(a.clone(), reading("n1", 8, 1))], at)
        .await
        .unwrap();
    assert_eq!(totals(a.clone()).await.0, 8);
    record_many(&api.pool, &[(a.clone(), reading("n3", 2, 1))], at)
        .await
        .unwrap();
    assert_eq!(totals(a.clone()).await.0, 10);
    assert_eq!(totals(b.clone()).await, (3, 7));
    // The namespace rows follow the same cursors.
    let chat: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(published), 0)::BIGINT FROM usage_minute WHERE project_id = $1 AND namespace = 'chat'",
    )
    .bind(a.as_str())
    .fetch_one(&api.pool)
    .await
    .unwrap();
    assert_eq!(chat, 10);
}
