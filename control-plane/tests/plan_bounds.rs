//! Attacks by a customer on what is the operator's (plans, status, limits) and races against
//! the plan's bounds: each test tries what an outsider would and shows it fails, and that the
//! operator's own path (library and CLI) works and is audited.

mod common;
mod fixtures;

use std::time::Duration;

use common::Api;
use fixtures::*;
use rotor_control_plane::ids::AccountId;
use rotor_control_plane::limits;
use rotor_control_plane::operator::{self, Operator, OperatorError};
use rotor_control_plane::tenant::compile;
use serde_json::json;

fn ops() -> Operator {
    Operator {
        name: "test-ops".into(),
    }
}

async fn account_id(api: &Api, email: &str) -> AccountId {
    sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1")
        .bind(email)
        .fetch_one(&api.pool)
        .await
        .unwrap()
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
    let rotor_control_plane::tenant::Compiled { config, .. } =
        compile(&api.pool, &id, None, None).await.unwrap();
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
    let rotor_control_plane::tenant::Compiled { config, .. } =
        compile(&api.pool, &id, None, None).await.unwrap();
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
    let (s, audit) = api.audit(&token, id.as_str()).await;
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
    // A time slice the kernel would clamp is refused, not silently changed.
    let (ok, _, err) = cli(
        &api,
        &["set-limits", "pro", r#"{"tenant_cpu_slice_us": 50}"#],
    )
    .await;
    assert!(!ok && err.contains("tenant_cpu_slice_us"), "{err}");
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
            .put_namespace(&token, id, &format!("pre{n}"), json!({}))
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
        .put_namespace(&token, id, "pre0", json!({"presence": true}))
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
async fn channels_without_a_namespace_are_held_to_the_plans_history_limits() {
    let api = Api::start().await;
    let token = api.account("owner@example.com").await;
    let p = api.project(&token, "unbounded").await;
    let path = format!("/v1/projects/{}", p["id"].as_str().unwrap());
    // A free project asking for four billion publications of history per channel.
    for (options, field) in [
        (
            json!({"history_size": 4_000_000_000u64, "history_ttl": "60s"}),
            "settings.without_namespace.history_size",
        ),
        (
            json!({"history_size": 10, "history_ttl": "720h"}),
            "settings.without_namespace.history_ttl",
        ),
    ] {
        let (s, b) = api
            .call(
                "PATCH",
                &path,
                Some(&token),
                Some(json!({"settings": {"without_namespace": options}})),
            )
            .await;
        assert_eq!((s, b["error"]["field"].as_str()), (400, Some(field)), "{b}");
    }
    let within =
        json!({"settings": {"without_namespace": {"history_size": 100, "history_ttl": "60s"}}});
    let (s, b) = api.call("PATCH", &path, Some(&token), Some(within)).await;
    assert_eq!(s, 200, "{b}");
    // Stored before the plan was lowered (or written past the API): the tenant still gets
    // the plan's maxima.
    sqlx::query(
        "UPDATE projects SET settings = jsonb_set(settings, '{without_namespace}', \
         '{\"history_size\": 4000000000, \"history_ttl\": \"720h\"}') WHERE id = $1",
    )
    .bind(p["id"].as_str().unwrap())
    .execute(&api.pool)
    .await
    .unwrap();
    let rotor_control_plane::tenant::Compiled { config, .. } =
        compile(&api.pool, &pid(&p), None, None).await.unwrap();
    let options = &config.channel.without_namespace;
    assert_eq!(options.history_size, 100, "free allows 100");
    assert_eq!(options.history_ttl.get(), Duration::from_secs(3600));
}
