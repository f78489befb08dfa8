//! A control plane's public app on a fresh test database, with JSON helpers, for the REST
//! integration tests: [`Api::call`] for any request, and typed helpers for the routes the tests
//! use again and again (a project, its secrets, API keys, namespaces, audit and usage, and the
//! config compiled for its tenant).
#![allow(dead_code)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rotor_control_plane::ids::ProjectId;
use rotor_control_plane::settings::Settings;
use rotor_control_plane::state::AppState;
use rotor_control_plane::tenant::Compiled;
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

    /// Creates a project named `name`; its JSON.
    pub async fn project(&self, token: &str, name: &str) -> Value {
        let (s, b) = self.create_project(token, json!({ "name": name })).await;
        assert_eq!(s, 201, "{b}");
        b
    }

    /// `POST /v1/projects` with `body`.
    pub async fn create_project(&self, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/projects", Some(token), Some(body))
            .await
    }

    /// `POST /v1/signup` with `body`.
    pub async fn signup(&self, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/signup", None, Some(body)).await
    }

    /// `POST /v1/tokens` with `body` (a login).
    pub async fn login(&self, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/tokens", None, Some(body)).await
    }

    /// `GET /v1/tokens`.
    pub async fn tokens(&self, token: &str) -> Value {
        self.call("GET", "/v1/tokens", Some(token), None).await.1
    }

    /// `DELETE /v1/tokens/{id}`: the status.
    pub async fn revoke_token(&self, token: &str, id: &str) -> u16 {
        let path = format!("/v1/tokens/{id}");
        self.call("DELETE", &path, Some(token), None).await.0
    }

    /// `GET /v1/projects` with `token`, if any.
    pub async fn projects(&self, token: Option<&str>) -> (u16, Value) {
        self.call("GET", "/v1/projects", token, None).await
    }

    /// `GET /v1/projects/{id}`.
    pub async fn get_project(&self, token: &str, id: &str) -> (u16, Value) {
        self.call("GET", &project_path(id, ""), Some(token), None)
            .await
    }

    /// `PATCH /v1/projects/{id}` with `body`.
    pub async fn patch_project(&self, token: &str, id: &str, body: Value) -> (u16, Value) {
        self.call("PATCH", &project_path(id, ""), Some(token), Some(body))
            .await
    }

    /// `PATCH /v1/projects/{id}` of `settings` alone.
    pub async fn patch_settings(&self, token: &str, id: &str, settings: Value) -> (u16, Value) {
        self.patch_project(token, id, json!({ "settings": settings }))
            .await
    }

    /// `DELETE /v1/projects/{id}`: the status.
    pub async fn delete_project(&self, token: &str, id: &str) -> u16 {
        self.call("DELETE", &project_path(id, ""), Some(token), None)
            .await
            .0
    }

    /// `GET /v1/projects/{id}/secrets`.
    pub async fn secrets(&self, token: &str, id: &str) -> Value {
        self.call("GET", &project_path(id, "/secrets"), Some(token), None)
            .await
            .1
    }

    /// `POST /v1/projects/{id}/secrets/rotate` with `body`, if any.
    pub async fn rotate_secret(&self, token: &str, id: &str, body: Option<Value>) -> Value {
        self.call(
            "POST",
            &project_path(id, "/secrets/rotate"),
            Some(token),
            body,
        )
        .await
        .1
    }

    /// `POST /v1/projects/{id}/api-keys` named `name`.
    pub async fn create_api_key(&self, token: &str, id: &str, name: &str) -> (u16, Value) {
        let body = json!({ "name": name });
        self.call(
            "POST",
            &project_path(id, "/api-keys"),
            Some(token),
            Some(body),
        )
        .await
    }

    /// `GET /v1/projects/{id}/api-keys`.
    pub async fn api_keys(&self, token: &str, id: &str) -> Value {
        self.call("GET", &project_path(id, "/api-keys"), Some(token), None)
            .await
            .1
    }

    /// `DELETE /v1/projects/{id}/api-keys/{key}`: the status.
    pub async fn delete_api_key(&self, token: &str, id: &str, key: &str) -> u16 {
        let path = project_path(id, &format!("/api-keys/{key}"));
        self.call("DELETE", &path, Some(token), None).await.0
    }

    /// `PUT /v1/projects/{id}/namespaces/{name}` with `options`.
    pub async fn put_namespace(
        &self,
        token: &str,
        id: &str,
        name: &str,
        options: Value,
    ) -> (u16, Value) {
        let path = project_path(id, &format!("/namespaces/{name}"));
        self.call("PUT", &path, Some(token), Some(options)).await
    }

    /// `GET /v1/projects/{id}/namespaces/{name}`.
    pub async fn get_namespace(&self, token: &str, id: &str, name: &str) -> (u16, Value) {
        let path = project_path(id, &format!("/namespaces/{name}"));
        self.call("GET", &path, Some(token), None).await
    }

    /// `DELETE /v1/projects/{id}/namespaces/{name}`: the status.
    pub async fn delete_namespace(&self, token: &str, id: &str, name: &str) -> u16 {
        let path = project_path(id, &format!("/namespaces/{name}"));
        self.call("DELETE", &path, Some(token), None).await.0
    }

    /// `GET /v1/projects/{id}/namespaces`.
    pub async fn namespaces(&self, token: &str, id: &str) -> Value {
        self.call("GET", &project_path(id, "/namespaces"), Some(token), None)
            .await
            .1
    }

    /// `GET /v1/projects/{id}/audit`.
    pub async fn audit(&self, token: &str, id: &str) -> (u16, Value) {
        self.call("GET", &project_path(id, "/audit"), Some(token), None)
            .await
    }

    /// `GET /v1/projects/{id}/usage{query}` (`query` empty or starting with `?`).
    pub async fn usage(&self, token: &str, id: &str, query: &str) -> (u16, Value) {
        let path = project_path(id, &format!("/usage{query}"));
        self.call("GET", &path, Some(token), None).await
    }

    /// The config the control plane compiles for project `id`'s tenant, with the dashboard's
    /// `origin` if any.
    pub async fn compile(&self, id: &str, origin: Option<&str>) -> Compiled {
        rotor_control_plane::tenant::compile(&self.pool, &ProjectId(id.to_owned()), None, origin)
            .await
            .unwrap()
    }

    /// Runs `rotor-control-plane operator ARGS…` with `stdin`, in this test's environment (so
    /// it finds the same secret key as this process), as operator `user` with `RUST_LOG` set to
    /// `log`: (success, stdout + stderr).
    pub async fn operator(
        &self,
        user: &str,
        log: &str,
        args: &[&str],
        stdin: &str,
    ) -> (bool, String) {
        use tokio::io::AsyncWriteExt as _;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotor-control-plane"))
            .arg("operator")
            .args(args)
            .env("DATABASE_URL", self.database_url())
            .env("USER", user)
            .env("RUST_LOG", log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the operator command finishes")
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
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

/// The path of project `id`, then `rest`.
fn project_path(id: &str, rest: &str) -> String {
    format!("/v1/projects/{id}{rest}")
}
