//! A control plane's public app on a fresh test database, with JSON helpers, for the REST
//! integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use rotor_control_plane::settings::Settings;
use rotor_control_plane::state::AppState;
use rotor_e2e::TestDatabase;
use serde_json::{json, Value};

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub pool: sqlx::PgPool,
    _db: TestDatabase,
}

impl Api {
    pub async fn start() -> Self {
        // These tests log in and sign up many times a second; the box-wide rate of password
        // checks is not what they are about (its own test sets it low).
        rotor_control_plane::secrets::set_password_checks_per_second(10_000);
        let db = TestDatabase::create().await.unwrap();
        let pool = rotor_control_plane::db::connect_and_migrate(db.url())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut settings = Settings::from_env();
        settings.public_url = "https://rotor.example".into();
        let state = AppState::new(pool.clone(), Arc::new(settings));
        let app = rotor_control_plane::app::public_app(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            pool,
            _db: db,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Signs up and returns a management token.
    pub async fn account(&self, email: &str) -> String {
        let (s, _) = self
            .call(
                "POST",
                "/v1/signup",
                None,
                Some(json!({"email": email, "password": "a long password"})),
            )
            .await;
        assert_eq!(s, 201);
        let (s, b) = self
            .call(
                "POST",
                "/v1/tokens",
                None,
                Some(json!({"email": email, "password": "a long password", "name": "test"})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }

    pub async fn project(&self, token: &str, name: &str) -> Value {
        let (s, b) = self
            .call(
                "POST",
                "/v1/projects",
                Some(token),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b
    }

    /// The URL of this test's database (for a spawned binary's `DATABASE_URL`).
    pub fn database_url(&self) -> &str {
        self._db.url()
    }

    pub async fn version(&self, project: &str) -> i64 {
        sqlx::query_scalar("SELECT config_version FROM projects WHERE id = $1")
            .bind(project)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}
