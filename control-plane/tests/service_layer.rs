//! The service layer's promises, shown on the surfaces that call it: a namespace name created
//! many times at once is created once (the others are told it is taken, by the service and by
//! the dashboard), concurrent creations of different names stop exactly at the plan's limit
//! on the dashboard as on the REST API, and a Redis-engine project is refused the same way on
//! both surfaces when the installation has no Redis to put it on.

mod auth;
mod common;

use std::sync::Arc;

use auth::{owner, App, Browser};
use rotor_control_plane::ids::AccountId;
use rotor_control_plane::service::namespaces::{self, Written};
use rotor_control_plane::service::projects::{self, Engine, NewProject};
use rotor_control_plane::service::{accounts, ServiceError};
use rotor_control_plane::settings::Settings;
use rotor_control_plane::state::AppState;
use rotor_e2e::TestDatabase;
use serde_json::json;

/// The service on a fresh database, without any HTTP in front of it.
async fn service() -> (AppState, TestDatabase) {
    rotor_control_plane::secrets::set_password_checks_per_second(10_000);
    let db = TestDatabase::create().await.unwrap();
    let pool = rotor_control_plane::db::connect_and_migrate(db.url())
        .await
        .unwrap();
    (AppState::new(pool, Arc::new(Settings::from_env())), db)
}

/// `n` dashboard clients sharing `b`'s session (one person's tabs).
fn tabs(b: &Browser, n: usize) -> Vec<Browser> {
    (0..n)
        .map(|_| Browser {
            base: b.base.clone(),
            http: b.http.clone(),
            cookies: b.cookies.clone(),
        })
        .collect()
}

async fn namespace_count(pool: &sqlx::PgPool, project: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM namespaces WHERE project_id = $1")
        .bind(project)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_creations_of_one_namespace_name_in_the_service_create_it_once() {
    let (state, _db) = service().await;
    let (account, _): (AccountId, String) =
        accounts::create_account(&state, "svc@example.com", "a long password")
            .await
            .unwrap();
    let new = NewProject {
        name: "svc".into(),
        engine: Engine::Memory,
        starter: None,
    };
    let project = projects::create(&state, &account, new).await.unwrap();
    let scope = projects::owned(&state, &account, project.id.as_str())
        .await
        .unwrap();
    let options = json!({"presence": true});
    let tries = (0..16).map(|_| namespaces::create(&state, &scope, "orders", &options));
    let results = tokio::time::timeout(auth::WAIT, futures_util::future::join_all(tries))
        .await
        .expect("the creations finish");
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(r, Err(ServiceError::Conflict(m)) if m.contains("\"orders\"")),
            "{r:?}"
        );
    }
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE project_id = $1 AND action = 'namespace.create'",
    )
    .bind(&project.id)
    .fetch_one(&state.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1, "one creation, one audit entry");
    assert_eq!(namespace_count(&state.pool, project.id.as_str()).await, 1);

    // A put of the same name replaces; a create is still refused; a replace of a missing name
    // is not found.
    let (written, _) = namespaces::put(&state, &scope, "orders", &json!({}))
        .await
        .unwrap();
    assert_eq!(written, Written::Replaced);
    assert!(matches!(
        namespaces::create(&state, &scope, "orders", &json!({})).await,
        Err(ServiceError::Conflict(_))
    ));
    assert!(matches!(
        namespaces::replace(&state, &scope, "missing", &json!({})).await,
        Err(ServiceError::NotFound)
    ));

    // Another account's scope cannot be made for this project.
    let (other, _) = accounts::create_account(&state, "other@example.com", "a long password")
        .await
        .unwrap();
    assert!(matches!(
        projects::owned(&state, &other, project.id.as_str()).await,
        Err(ServiceError::NotFound)
    ));
}

#[tokio::test]
async fn concurrent_dashboard_creations_of_one_name_create_it_once_and_tell_the_others() {
    let app = App::start("http://rotor.test").await;
    let (b, id, csrf) = owner(&app, "127.0.0.11", "tabs@example.com").await;
    let before = namespace_count(&app.pool, &id).await;
    let path = format!("/projects/{id}/namespaces");
    let posts = tabs(&b, 12).into_iter().map(|mut tab| {
        let (path, csrf) = (path.clone(), csrf.clone());
        async move {
            tab.post(
                &path,
                &[("csrf", &csrf), ("name", "orders"), ("preset", "chat")],
            )
            .await
        }
    });
    let pages = tokio::time::timeout(auth::WAIT, futures_util::future::join_all(posts))
        .await
        .expect("the forms are answered");
    let made: Vec<_> = pages.iter().filter(|p| p.status == 303).collect();
    assert_eq!(
        made.len(),
        1,
        "{:?}",
        pages.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    assert_eq!(
        made[0].location.as_deref(),
        Some(format!("/projects/{id}/namespaces/orders").as_str())
    );
    for p in pages.iter().filter(|p| p.status != 303) {
        assert_eq!(p.status, 422, "{}", p.body);
        assert!(
            p.body.contains("A namespace called") && p.body.contains("already exists"),
            "{}",
            p.body
        );
    }
    assert_eq!(namespace_count(&app.pool, &id).await, before + 1);
}

#[tokio::test]
async fn concurrent_dashboard_creations_of_different_names_stop_exactly_at_the_plan_limit() {
    let app = App::start("http://rotor.test").await;
    let (b, id, csrf) = owner(&app, "127.0.0.12", "limit@example.com").await;
    // The project starts with its quick-start namespace: 1 of the free plan's 10.
    let before = namespace_count(&app.pool, &id).await;
    assert_eq!(before, 1);
    let path = format!("/projects/{id}/namespaces");
    let posts = tabs(&b, 20).into_iter().enumerate().map(|(n, mut tab)| {
        let (path, csrf) = (path.clone(), csrf.clone());
        async move {
            let name = format!("race{n}");
            tab.post(&path, &[("csrf", &csrf), ("name", &name)]).await
        }
    });
    let pages = tokio::time::timeout(auth::WAIT, futures_util::future::join_all(posts))
        .await
        .expect("the forms are answered");
    assert_eq!(
        pages.iter().filter(|p| p.status == 303).count(),
        9,
        "{:?}",
        pages.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    for p in pages.iter().filter(|p| p.status != 303) {
        assert_eq!(p.status, 422, "{}", p.body);
        assert!(p.body.contains("allows at most 10"), "{}", p.body);
    }
    assert_eq!(namespace_count(&app.pool, &id).await, 10);
}

#[tokio::test]
async fn a_redis_engine_project_is_refused_on_both_surfaces_without_a_redis_to_place_it_on() {
    let app = App::start_with("http://rotor.test", |s| s.redis_url = None).await;
    let (mut b, _, csrf) = owner(&app, "127.0.0.13", "redis@example.com").await;
    let (s, _, login) = app
        .call(
            "127.0.0.13",
            "POST",
            "/v1/tokens",
            None,
            Some(auth::credentials("redis@example.com", auth::PASSWORD)),
        )
        .await;
    assert_eq!(s, 201, "{login}");
    let token = login["token"].as_str().unwrap();
    let (s, _, body) = app
        .call(
            "127.0.0.13",
            "POST",
            "/v1/projects",
            Some(token),
            Some(json!({"name": "cache", "engine": "redis"})),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(body["error"]["field"], "engine");
    assert_eq!(
        body["error"]["message"],
        "The Redis engine is not available on this installation."
    );
    let page = b
        .post(
            "/projects",
            &[("csrf", &csrf), ("name", "cache"), ("engine", "redis")],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(
        page.body
            .contains("The Redis engine is not available on this installation."),
        "{}",
        page.body
    );
    let redis_projects: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projects WHERE engine = 'redis'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(redis_projects, 0);
}
