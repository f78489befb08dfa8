//! Attacks by a customer on what is the operator's (plans, status, limits), races against the
//! plan's bounds, and secrets at rest: each test tries what an outsider would and shows it
//! fails, and that the operator's own path works.

mod common;

use std::time::Duration;

use common::Api;
use rotor_control_plane::ids::{AccountId, ProjectId};
use rotor_control_plane::operator::{self, Operator, OperatorError};
use rotor_control_plane::sealed::SealError;
use rotor_control_plane::tenant::{compile, CompileError};
use rotor_control_plane::{limits, secret_store};
use serde_json::{json, Value};

const SECRET_HEADER: &str = "Bearer backend-credential-7f3a9c";

fn ops() -> Operator {
    Operator {
        name: "test-ops".into(),
    }
}

fn pid(p: &Value) -> ProjectId {
    ProjectId(p["id"].as_str().unwrap().to_owned())
}

async fn account_id(api: &Api, email: &str) -> AccountId {
    sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1")
        .bind(email)
        .fetch_one(&api.pool)
        .await
        .unwrap()
}

/// Every audit row of the database as one text.
async fn audit_text(api: &Api) -> String {
    let rows: Vec<String> = sqlx::query_scalar("SELECT concat_ws(' ', actor, action, target, before::text, after::text) FROM audit_log ORDER BY id")
        .fetch_all(&api.pool)
        .await
        .unwrap();
    rows.join("\n")
}

/// Settings with a connect proxy that sends a credential to the customer's backend.
fn settings_with_header(value: &str) -> Value {
    json!({
        "client_proxy": {"connect": {"enabled": true, "endpoint": "https://backend.example/connect",
            "http": {"static_headers": {"Authorization": value}}}}
    })
}

#[tokio::test]
async fn a_customer_cannot_change_plan_or_status_and_cannot_unsuspend_themselves() {
    let api = Api::start().await;
    let token = api.account("a@example.com").await;
    let p = api.project(&token, "app").await;
    let id = p["id"].as_str().unwrap();
    let path = format!("/v1/projects/{id}");
    let version = api.version(id).await;
    for body in [
        json!({"plan": "custom"}),
        json!({"plan": "pro", "name": "sneaky"}),
        json!({"status": "suspended"}),
        json!({"status": "active"}),
        json!({"status": "paused"}),
    ] {
        let (s, b) = api
            .call("PATCH", &path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (403, Some("operator_only")),
            "{body}: {b}"
        );
        assert!(
            b["error"]["message"].as_str().unwrap().contains("operator"),
            "{b}"
        );
    }
    // Limits are no field of a project at all.
    let (s, _) = api
        .call(
            "PATCH",
            &path,
            Some(&token),
            Some(json!({"limits": {"max_connections": 0}})),
        )
        .await;
    assert!(s == 400 || s == 422, "{s}");
    let (_, now) = api.call("GET", &path, Some(&token), None).await;
    assert_eq!(
        (now["plan"].as_str(), now["status"].as_str()),
        (Some("free"), Some("active"))
    );
    assert_eq!(now["name"], "app", "nothing of a refused patch is applied");
    assert_eq!(api.version(id).await, version);

    // The operator suspends; the customer cannot lift it.
    operator::suspend(&api.pool, &ops(), id).await.unwrap();
    let (s, _) = api
        .call(
            "PATCH",
            &path,
            Some(&token),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(s, 403);
    let (_, now) = api.call("GET", &path, Some(&token), None).await;
    assert_eq!(now["status"], "suspended");
    // Renaming and settings remain the customer's.
    let (s, b) = api
        .call(
            "PATCH",
            &path,
            Some(&token),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!((s, b["name"].as_str()), (200, Some("renamed")), "{b}");
}

#[tokio::test]
async fn the_operator_changes_plans_status_and_limits_with_an_audit_trail_and_a_config_push() {
    let api = Api::start().await;
    let token = api.account("owner@example.com").await;
    let p = api.project(&token, "upgrading").await;
    let id = pid(&p);
    let slug = p["slug"].as_str().unwrap();

    let v0 = api.version(id.as_str()).await;
    let change = operator::set_plan(&api.pool, &ops(), slug, "pro")
        .await
        .unwrap();
    assert_eq!(
        (
            change.before["plan"].as_str(),
            change.after["plan"].as_str()
        ),
        (Some("free"), Some("pro"))
    );
    assert!(
        api.version(id.as_str()).await > v0,
        "the reconciler must see a change"
    );
    let (config, _) = compile(&api.pool, &id, None, None).await.unwrap();
    assert_eq!(config.client.connection_limit, 10000);

    operator::suspend(&api.pool, &ops(), id.as_str())
        .await
        .unwrap();
    let v1 = api.version(id.as_str()).await;
    operator::resume(&api.pool, &ops(), slug).await.unwrap();
    assert!(api.version(id.as_str()).await > v1);

    let change = operator::set_limits(&api.pool, &ops(), "pro", &json!({"max_connections": 1234}))
        .await
        .unwrap();
    assert_eq!(change.projects_bumped, 1);
    assert_eq!(
        change.after["max_api_keys"], 50,
        "a patch keeps the other limits"
    );
    let (config, _) = compile(&api.pool, &id, None, None).await.unwrap();
    assert_eq!(config.client.connection_limit, 1234);

    // Bad operator input is refused and changes nothing.
    for (plan, limits) in [
        ("pro", json!({"max_conections": 5})),
        ("pro", json!({"max_connections": -1})),
        ("pro", json!({"max_connections": "lots"})),
        ("pro", json!([1])),
    ] {
        let e = operator::set_limits(&api.pool, &ops(), plan, &limits)
            .await
            .unwrap_err();
        assert!(
            matches!(e, OperatorError::InvalidLimits(_)),
            "{limits}: {e}"
        );
    }
    let e = operator::set_plan(&api.pool, &ops(), slug, "platinum")
        .await
        .unwrap_err();
    assert!(matches!(e, OperatorError::UnknownPlan { .. }), "{e}");
    assert!(e.to_string().contains("free, pro"), "{e}");
    let e = operator::set_plan(&api.pool, &ops(), "no-such-project", "pro")
        .await
        .unwrap_err();
    assert!(matches!(e, OperatorError::NotFound(_)), "{e}");
    let e = operator::suspend(&api.pool, &ops(), "owner@example.com")
        .await
        .unwrap_err();
    assert!(matches!(e, OperatorError::NotAProject(_)), "{e}");

    // The owner sees every operator change in the project's audit trail, by the operator.
    let (s, audit) = api
        .call(
            "GET",
            &format!("/v1/projects/{id}/audit"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().unwrap().starts_with("operator:"))
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("operator:test-ops", "operator.resume"),
            ("operator:test-ops", "operator.suspend"),
            ("operator:test-ops", "operator.set_plan"),
        ]
    );
    let plans = operator::list_plans(&api.pool).await.unwrap();
    let pro = plans.iter().find(|p| p.name == "pro").unwrap();
    assert_eq!(
        (pro.projects, pro.limits["max_connections"].as_i64()),
        (1, Some(1234))
    );
}

/// Runs `rotor-control-plane operator …` against the test database.
async fn cli(api: &Api, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rotor-control-plane"))
            .arg("operator")
            .args(args)
            .env("DATABASE_URL", api.database_url())
            .env("USER", "alice-ops")
            .env("RUST_LOG", "warn")
            .env_remove("ROTOR_SECRET_KEY")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the operator command finishes")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_operator_cli_sets_plans_suspends_resumes_and_edits_limits() {
    let api = Api::start().await;
    let token = api.account("cli@example.com").await;
    let p = api.project(&token, "cli app").await;
    let id = pid(&p);
    let slug = p["slug"].as_str().unwrap();

    let (ok, out, err) = cli(&api, &["set-plan", slug, "pro"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"free\"") && out.contains("\"pro\""), "{out}");
    let (ok, _, err) = cli(&api, &["suspend", id.as_str()]).await;
    assert!(ok, "{err}");
    let status: String = sqlx::query_scalar("SELECT status FROM projects WHERE id = $1")
        .bind(&id)
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(status, "suspended");
    let (ok, _, err) = cli(&api, &["resume", slug]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&api, &["set-limits", "free", r#"{"max_projects": 4}"#]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&api, &["set-plan", "cli@example.com", "custom"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&api, &["list-plans"]).await;
    assert!(ok, "{err}");
    let free = out.lines().find(|l| l.starts_with("free\t")).unwrap();
    assert!(free.contains("\"max_projects\":4"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("custom\t") && l.contains("accounts=1")),
        "{out}"
    );

    let row: (String, String) = sqlx::query_as("SELECT plan, status FROM projects WHERE id = $1")
        .bind(&id)
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(row, ("pro".into(), "active".into()));
    let actors: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, action FROM audit_log WHERE actor LIKE 'operator:%' ORDER BY id",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    assert_eq!(
        actors,
        [
            "operator.set_plan",
            "operator.suspend",
            "operator.resume",
            "operator.set_limits",
            "operator.set_account_plan"
        ]
        .map(|a| ("operator:alice-ops".to_owned(), a.to_owned()))
    );

    // Mistakes fail loudly with the reason and change nothing.
    let (ok, _, err) = cli(&api, &["set-plan", slug, "platinum"]).await;
    assert!(!ok && err.contains("unknown plan"), "{err}");
    let (ok, _, err) = cli(&api, &["set-limits", "free", r#"{"max_projects": "many"}"#]).await;
    assert!(!ok && err.contains("max_projects"), "{err}");
    let (ok, _, err) = cli(&api, &["suspend", "nobody-here"]).await;
    assert!(!ok && err.contains("nobody-here"), "{err}");
}

#[tokio::test]
async fn sixty_concurrent_project_creations_from_a_free_account_create_exactly_three() {
    let api = Api::start().await;
    let token = api.account("racer@example.com").await;
    let calls = (0..60).map(|n| {
        api.call(
            "POST",
            "/v1/projects",
            Some(&token),
            Some(json!({"name": format!("race {n}")})),
        )
    });
    let results = futures_util::future::join_all(calls).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 3, "free allows 3 projects");
    for (s, b) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*s, b["error"]["code"].as_str()),
            (403, Some("plan_limit")),
            "{b}"
        );
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_projects"),
            "{b}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM projects")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(count, 3);

    // The operator raises the account's plan; new projects start on it.
    operator::set_plan(&api.pool, &ops(), "racer@example.com", "pro")
        .await
        .unwrap();
    let p = api.project(&token, "fourth").await;
    assert_eq!(p["plan"], "pro");
}

#[tokio::test]
async fn twenty_concurrent_namespace_creations_stop_at_the_plan_limit_and_updates_still_work() {
    let api = Api::start().await;
    let token = api.account("ns@example.com").await;
    let p = api.project(&token, "namespaces").await;
    let id = p["id"].as_str().unwrap();
    // Already near the limit: 6 of free's 10.
    for n in 0..6 {
        let (s, _) = api
            .call(
                "PUT",
                &format!("/v1/projects/{id}/namespaces/pre{n}"),
                Some(&token),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let paths: Vec<String> = (0..20)
        .map(|n| format!("/v1/projects/{id}/namespaces/race{n}"))
        .collect();
    let calls = paths
        .iter()
        .map(|path| api.call("PUT", path, Some(&token), Some(json!({"presence": true}))));
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        4,
        "{results:?}"
    );
    for (s, b) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*s, b["error"]["code"].as_str()),
            (403, Some("plan_limit")),
            "{b}"
        );
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_namespaces"),
            "{b}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM namespaces WHERE project_id = $1")
        .bind(id)
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(count, 10);
    // At the limit, changing an existing namespace is still allowed.
    let (s, b) = api
        .call(
            "PUT",
            &format!("/v1/projects/{id}/namespaces/pre0"),
            Some(&token),
            Some(json!({"presence": true})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn concurrent_api_key_creations_stop_at_the_plan_limit() {
    let api = Api::start().await;
    let token = api.account("keys@example.com").await;
    let p = api.project(&token, "keys").await;
    let path = format!("/v1/projects/{}/api-keys", p["id"].as_str().unwrap());
    let calls = (0..15).map(|n| {
        api.call(
            "POST",
            &path,
            Some(&token),
            Some(json!({"name": format!("k{n}")})),
        )
    });
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 5);
    assert!(results
        .iter()
        .filter(|(s, _)| *s != 201)
        .all(|(s, b)| *s == 403 && b["error"]["code"] == "plan_limit"));
}

#[tokio::test]
async fn the_management_token_check_holds_under_concurrency_in_the_callers_transaction() {
    let api = Api::start().await;
    let _token = api.account("tokens@example.com").await; // one token already
    let account = account_id(&api, "tokens@example.com").await;
    let tries = (0..15).map(|n| {
        let pool = api.pool.clone();
        let account = account.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            if let Err(e) = limits::check_tokens_in_tx(&mut tx, &account).await {
                assert!(e.to_string().contains("max_management_tokens"), "{e}");
                return false;
            }
            sqlx::query(
                "INSERT INTO management_tokens (id, account_id, name, token_hash) VALUES ($1, $2, $3, $4)",
            )
            .bind(format!("tok_race{n}"))
            .bind(&account)
            .bind("race")
            .bind(format!("hash{n}"))
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
            true
        })
    });
    let made = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(made, 9, "free allows 10 tokens and one existed");
}

#[tokio::test]
async fn secrets_are_sealed_in_the_database_yet_open_for_the_tenant_and_the_owner() {
    let api = Api::start().await;
    let token = api.account("sealed@example.com").await;
    let p = api.project(&token, "sealed").await;
    let id = pid(&p);
    let (_, s) = api
        .call(
            "GET",
            &format!("/v1/projects/{id}/secrets"),
            Some(&token),
            None,
        )
        .await;
    let secret = s["token_hmac_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);

    let (st, b) = api
        .call(
            "PATCH",
            &format!("/v1/projects/{id}"),
            Some(&token),
            Some(json!({"settings": settings_with_header(SECRET_HEADER)})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["settings"]["client_proxy"]["connect"]["http"]["static_headers"]["Authorization"],
        SECRET_HEADER,
        "the owner reads back what they set"
    );
    // Rotate with a grace period so the previous secret is stored too.
    let (_, r) = api
        .call(
            "POST",
            &format!("/v1/projects/{id}/secrets/rotate"),
            Some(&token),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    let rotated = r["token_hmac_secret"].as_str().unwrap().to_owned();

    // Nothing in the rows an attacker with a database dump would read is a secret.
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT t::text FROM token_secrets t UNION ALL SELECT p::text FROM projects p",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    let dump = dump.join("\n");
    for plain in [
        secret.as_str(),
        rotated.as_str(),
        SECRET_HEADER,
        "backend-credential",
    ] {
        assert!(!dump.contains(plain), "{plain:?} stored in plaintext");
    }
    assert!(dump.contains("sealed:v1:"));

    // The tenant's config has them in plaintext.
    let (config, _) = compile(&api.pool, &id, None, None).await.unwrap();
    assert_eq!(config.client.token.hmac_secret_key, rotated);
    assert_eq!(config.client.token.hmac_previous_secret_key, secret);
    assert_eq!(
        config.client.proxy.connect.http.static_headers["Authorization"],
        SECRET_HEADER
    );
    // The owner reads the current secret; GET shows the header.
    let (_, s) = api
        .call(
            "GET",
            &format!("/v1/projects/{id}/secrets"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s["token_hmac_secret"], rotated.as_str());
    let (_, got) = api
        .call("GET", &format!("/v1/projects/{id}"), Some(&token), None)
        .await;
    assert_eq!(got["settings"], settings_with_header(SECRET_HEADER));

    // The audit trail says what changed, never the values.
    let audit = audit_text(&api).await;
    for plain in [
        secret.as_str(),
        rotated.as_str(),
        "backend-credential",
        "sealed:v1:",
    ] {
        assert!(
            !audit.contains(plain),
            "{plain:?} in the audit log: {audit}"
        );
    }
    assert!(audit.contains("[redacted]"), "{audit}");
    assert!(audit.contains(r#""hmac_secret": "changed""#), "{audit}");
}

#[tokio::test]
async fn a_sealed_secret_copied_into_another_projects_row_does_not_open() {
    let api = Api::start().await;
    let token = api.account("thief@example.com").await;
    let victim = pid(&api.project(&token, "victim").await);
    let thief = pid(&api.project(&token, "thief").await);
    let (s, _) = api
        .call(
            "PATCH",
            &format!("/v1/projects/{victim}"),
            Some(&token),
            Some(json!({"settings": settings_with_header(SECRET_HEADER)})),
        )
        .await;
    assert_eq!(s, 200);

    // The token secret, row to row.
    sqlx::query(
        "UPDATE token_secrets SET hmac_secret = (SELECT hmac_secret FROM token_secrets WHERE project_id = $1) \
         WHERE project_id = $2",
    )
    .bind(&victim)
    .bind(&thief)
    .execute(&api.pool)
    .await
    .unwrap();
    let e = compile(&api.pool, &thief, None, None).await.unwrap_err();
    assert!(
        matches!(
            &e,
            CompileError::Sealed {
                field: "token_secrets.hmac_secret",
                source: SealError::Mismatch,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains(thief.as_str()) && e.to_string().contains("another row"),
        "{e}"
    );
    let (s, b) = api
        .call(
            "GET",
            &format!("/v1/projects/{thief}/secrets"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (500, Some("internal")),
        "{b}"
    );
    assert!(
        !b.to_string().contains("sealed"),
        "5xx bodies are opaque: {b}"
    );

    // A proxy header, settings to settings.
    sqlx::query(
        "UPDATE projects SET settings = (SELECT settings FROM projects WHERE id = $1) WHERE id = $2",
    )
    .bind(&victim)
    .bind(&thief)
    .execute(&api.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE token_secrets SET hmac_secret = $2 WHERE project_id = $1")
        .bind(&thief)
        .bind(secret_store::seal_token_secret(&thief, "thiefs own secret").unwrap())
        .execute(&api.pool)
        .await
        .unwrap();
    let e = compile(&api.pool, &thief, None, None).await.unwrap_err();
    assert!(
        matches!(
            &e,
            CompileError::Sealed {
                source: SealError::Mismatch,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("static_headers"), "{e}");
    // The victim is untouched.
    compile(&api.pool, &victim, None, None).await.unwrap();
}

#[tokio::test]
async fn the_previous_secret_is_erased_once_its_grace_period_ends() {
    let api = Api::start().await;
    let token = api.account("grace@example.com").await;
    let a = pid(&api.project(&token, "a").await);
    let b = pid(&api.project(&token, "b").await);
    for id in [&a, &b] {
        let (s, _) = api
            .call(
                "POST",
                &format!("/v1/projects/{id}/secrets/rotate"),
                Some(&token),
                Some(json!({"grace_seconds": 3600})),
            )
            .await;
        assert_eq!(s, 200);
    }
    let previous = |id: ProjectId| {
        let pool = api.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT previous_hmac_secret FROM token_secrets WHERE project_id = $1",
            )
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(previous(a.clone()).await.is_some());
    // Within the grace period the sweep keeps it.
    assert_eq!(secret_store::sweep(&api.pool).await.unwrap(), 0);
    // The grace period ends (the deadline is moved, as time passing would).
    sqlx::query("UPDATE token_secrets SET previous_valid_until = now() - interval '1 second'")
        .execute(&api.pool)
        .await
        .unwrap();
    // Compiling erases it for that project...
    let (config, _) = compile(&api.pool, &a, None, None).await.unwrap();
    assert!(config.client.token.hmac_previous_secret_key.is_empty());
    assert_eq!(previous(a.clone()).await, None);
    assert!(previous(b.clone()).await.is_some());
    // ...and the periodic sweep for all.
    assert_eq!(secret_store::sweep(&api.pool).await.unwrap(), 1);
    assert_eq!(previous(b.clone()).await, None);
    let until: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT previous_valid_until FROM token_secrets WHERE project_id = $1")
            .bind(&b)
            .fetch_one(&api.pool)
            .await
            .unwrap();
    assert_eq!(until, None);
}

#[tokio::test]
async fn plaintext_secrets_left_by_an_older_version_are_sealed_at_start_up_once() {
    let api = Api::start().await;
    let token = api.account("legacy@example.com").await;
    let id = pid(&api.project(&token, "legacy").await);
    // What a database from before sealing holds.
    sqlx::query(
        "UPDATE token_secrets SET hmac_secret = 'legacy-plain-secret', \
           previous_hmac_secret = 'legacy-old-secret', previous_valid_until = now() + interval '1 hour' \
         WHERE project_id = $1",
    )
    .bind(&id)
    .execute(&api.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE projects SET settings = $2 WHERE id = $1")
        .bind(&id)
        .bind(settings_with_header(SECRET_HEADER))
        .execute(&api.pool)
        .await
        .unwrap();

    let report = secret_store::seal_at_rest(&api.pool).await.unwrap();
    assert_eq!(
        (report.token_rows, report.settings_rows, report.unknown_key),
        (1, 1, 0)
    );
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT t::text FROM token_secrets t UNION ALL SELECT p::text FROM projects p",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    let dump = dump.join("\n");
    for plain in [
        "legacy-plain-secret",
        "legacy-old-secret",
        "backend-credential",
    ] {
        assert!(!dump.contains(plain), "{plain} still in plaintext");
    }
    let (config, _) = compile(&api.pool, &id, None, None).await.unwrap();
    assert_eq!(config.client.token.hmac_secret_key, "legacy-plain-secret");
    assert_eq!(
        config.client.token.hmac_previous_secret_key,
        "legacy-old-secret"
    );
    assert_eq!(
        config.client.proxy.connect.http.static_headers["Authorization"],
        SECRET_HEADER
    );
    // A second start-up changes nothing.
    let again = secret_store::seal_at_rest(&api.pool).await.unwrap();
    assert_eq!(again, secret_store::SealReport::default());
}

/// Starts `rotor-control-plane serve` on the test database with `env`; returns the child and
/// what it printed until it listened or exited (bounded).
async fn serve(api: &Api, env: &[(&str, &str)]) -> (tokio::process::Child, String, bool) {
    use tokio::io::AsyncBufReadExt as _;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotor-control-plane"));
    cmd.arg("serve")
        .env("DATABASE_URL", api.database_url())
        .env("ROTOR_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove("ROTOR_SECRET_KEY")
        .env_remove("ROTOR_SECRET_KEY_FILE")
        .env_remove("ROTOR_STATE_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let (mut out_done, mut err_done) = (false, false);
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while !(out_done && err_done) {
            tokio::select! {
                line = stdout.next_line(), if !out_done => match line.unwrap() {
                    Some(l) if l.contains("listening on") => return true,
                    Some(l) => seen.push_str(&format!("{l}\n")),
                    None => out_done = true,
                },
                line = stderr.next_line(), if !err_done => match line.unwrap() {
                    Some(l) => seen.push_str(&format!("{l}\n")),
                    None => err_done = true,
                },
            }
        }
        false
    })
    .await
    .expect("the control plane starts or exits within 30 s");
    // What it logged before listening is in the pipe already.
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_millis(500), stderr.next_line()).await
    {
        seen.push_str(&format!("{l}\n"));
    }
    (child, seen, listening)
}

#[tokio::test]
async fn without_a_secret_key_the_server_generates_a_private_development_key_and_warns() {
    use std::os::unix::fs::PermissionsExt as _;
    let api = Api::start().await;
    let dir = std::env::temp_dir().join(format!("rotor-state-{}", uuid_like()));
    let (mut child, seen, listening) =
        serve(&api, &[("ROTOR_STATE_DIR", dir.to_str().unwrap())]).await;
    assert!(listening, "{seen}");
    assert!(seen.contains("development key"), "{seen}");
    let key = dir.join("secret.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    // A malformed key stops the server at start-up, without echoing it.
    let (_child, seen, listening) = serve(&api, &[("ROTOR_SECRET_KEY", "not-a-key-at-all")]).await;
    assert!(!listening, "{seen}");
    assert!(seen.contains("ROTOR_SECRET_KEY must be 32 bytes"), "{seen}");
    assert!(!seen.contains("not-a-key-at-all"), "{seen}");
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
