//! What the login, sign-up and session attack tests share: the public app served with each
//! request's client address (as the edge serves it), JSON calls that report `Retry-After`, and
//! a browser-less dashboard client that keeps its cookies by hand.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::redirect::Policy;
use rotor_control_plane::settings::Settings;
use rotor_control_plane::state::AppState;
use rotor_e2e::TestDatabase;
use serde_json::{json, Value};

use crate::common::Api;

pub const PASSWORD: &str = "a long password";
/// Every wait on the app is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// The public app served the way the edge serves it: each request knows its client address
/// (here from the socket; the edge passes `PeerAddr`), so per-address limits apply.
pub struct App {
    pub base: String,
    pub pool: sqlx::PgPool,
    pub _db: TestDatabase,
}

impl App {
    pub async fn start(public_url: &str) -> Self {
        Self::start_with_mail(public_url, None).await
    }

    /// [`App::start`] with its mail going out through the SMTP relay at `smtp_url` (a test
    /// mailbox), from `Rotor <no-reply@rotor.example>`.
    pub async fn start_with_mail(public_url: &str, smtp_url: Option<&str>) -> Self {
        let mail = smtp_url.map(|url| {
            rotor_control_plane::mail::SmtpConfig::parse(
                url,
                Some("Rotor <no-reply@rotor.example>"),
                public_url,
            )
            .unwrap()
        });
        Self::start_with(public_url, move |settings| settings.mail = mail).await
    }

    /// [`App::start`] with `edit` applied to the settings (read from the environment) first.
    pub async fn start_with(public_url: &str, edit: impl FnOnce(&mut Settings)) -> Self {
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
        settings.public_url = public_url.into();
        edit(&mut settings);
        let app =
            rotor_control_plane::app::public_app(AppState::new(pool.clone(), Arc::new(settings)));
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Self {
            base: format!("http://{addr}"),
            pool,
            _db: db,
        }
    }

    /// An HTTP client whose requests come from `from` (any 127.x.y.z address works).
    pub fn client(&self, from: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(from.parse::<IpAddr>().unwrap())
            .redirect(Policy::none())
            .timeout(WAIT)
            .build()
            .unwrap()
    }

    /// A JSON call from `from`: (status, Retry-After seconds, body).
    pub async fn call(
        &self,
        from: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Option<u64>, Value) {
        call(&self.client(from), &self.base, method, path, token, body).await
    }

    pub fn browser(&self, from: &str) -> Browser {
        Browser {
            base: self.base.clone(),
            http: self.client(from),
            cookies: Vec::new(),
        }
    }
}

pub async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<u64>, Value) {
    let mut req = http.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = retry_after(&resp);
    let text = resp.text().await.unwrap();
    (
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

pub fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

pub fn credentials(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password, "name": "ci"})
}

/// A dashboard page or form answer.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub retry_after: Option<u64>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// A browser-less dashboard client that keeps cookies by hand, to see every Set-Cookie.
pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
    pub cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        if !value.is_empty() {
            self.cookies.push((name.to_owned(), value.to_owned()));
        }
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let header = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let resp = req.header(COOKIE, header).send().await.unwrap();
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((n, v)) = pair.split_once('=') {
                self.set(n, v);
            }
        }
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            retry_after: retry_after(&resp),
            set_cookies,
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    /// The first `<input type="hidden" name="csrf" value="…">` of a page.
    pub fn csrf_in(html: &str) -> String {
        html.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
    }

    /// Submits the login form (fetching it first for its CSRF token).
    pub async fn login(&mut self, email: &str, password: &str, next: &str) -> Page {
        let form = self.get("/login").await;
        let csrf = Self::csrf_in(&form.body);
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", password),
                ("next", next),
            ],
        )
        .await
    }

    /// Submits the sign-up form.
    pub async fn signup(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/signup").await;
        let csrf = Self::csrf_in(&form.body);
        self.post(
            "/signup",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }

    /// Submits the account page's password form with `csrf`, ticking "log out my
    /// management tokens" when `revoke_tokens`.
    pub async fn change_password(
        &mut self,
        csrf: &str,
        current: &str,
        new: &str,
        revoke_tokens: bool,
    ) -> Page {
        let mut form = vec![
            ("csrf", csrf),
            ("current", current),
            ("new", new),
            ("confirm", new),
        ];
        if revoke_tokens {
            form.push(("revoke_tokens", "on"));
        }
        self.post("/account/password", &form).await
    }

    /// The session's CSRF token, from a logged-in page.
    pub async fn session_csrf(&mut self) -> String {
        let page = self.get("/account").await;
        assert_eq!(page.status, 200, "logged in");
        Self::csrf_in(&page.body)
    }
}

/// Sends `n` wrong-password token requests for distinct unknown emails at once through the
/// shared harness (no client address: only per-email limits, so every one costs an argon2
/// verification); returns the statuses with their Retry-After.
pub fn flood(api: &Api, n: usize) -> tokio::task::JoinHandle<Vec<(u16, Option<u64>, Value)>> {
    let base = api.base.clone();
    let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    tokio::spawn(async move {
        let calls = (0..n).map(|i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                call(
                    &http,
                    &base,
                    "POST",
                    "/v1/tokens",
                    None,
                    Some(credentials(
                        &format!("nobody{i}@example.com"),
                        "wrong guess",
                    )),
                )
                .await
            }
        });
        futures_util::future::join_all(calls).await
    })
}

/// An account signed in with the browser-less client, with one project: (browser, project id,
/// session CSRF token).
pub async fn owner(app: &App, from: &str, email: &str) -> (Browser, String, String) {
    let mut b = app.browser(from);
    let page = b.signup(email, PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let csrf = b.session_csrf().await;
    let page = b
        .post(
            "/projects",
            &[("csrf", &csrf), ("name", "Shop"), ("engine", "memory")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let location = page.location.unwrap_or_default();
    let id = location.trim_start_matches("/projects/").to_owned();
    assert!(id.starts_with("prj_"), "{location}");
    (b, id, csrf)
}

/// The text of the element with `id` (its inner text up to the next tag).
pub fn text_of(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[start..];
    let open = rest.find('>')?;
    let body = &rest[open + 1..];
    let end = body.find('<').unwrap_or(body.len());
    Some(body[..end].trim().to_owned())
}
