//! Attacks on logins, sign-ups, sessions and management tokens, each performed against the
//! real HTTP app and shown to fail: password floods that would stall the runtime, brute force
//! on the REST API and the dashboard (one shared limit), mass sign-ups, cookies that could be
//! planted or sent cross-site, `next=` open redirects, stolen management tokens that outlive a
//! password change or their expiry.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::Api;
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::redirect::Policy;
use rotor_control_plane::settings::Settings;
use rotor_control_plane::state::AppState;
use rotor_e2e::TestDatabase;
use serde_json::{json, Value};

const PASSWORD: &str = "a long password";
/// Every wait on the app is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

/// The public app served the way the edge serves it: each request knows its client address
/// (here from the socket; the edge passes `PeerAddr`), so per-address limits apply.
struct App {
    base: String,
    pool: sqlx::PgPool,
    _db: TestDatabase,
}

impl App {
    async fn start(public_url: &str) -> Self {
        let db = TestDatabase::create().await.unwrap();
        let pool = rotor_control_plane::db::connect_and_migrate(db.url())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut settings = Settings::from_env();
        settings.public_url = public_url.into();
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
    fn client(&self, from: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(from.parse::<IpAddr>().unwrap())
            .redirect(Policy::none())
            .timeout(WAIT)
            .build()
            .unwrap()
    }

    /// A JSON call from `from`: (status, Retry-After seconds, body).
    async fn call(
        &self,
        from: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Option<u64>, Value) {
        call(&self.client(from), &self.base, method, path, token, body).await
    }

    fn browser(&self, from: &str) -> Browser {
        Browser {
            base: self.base.clone(),
            http: self.client(from),
            cookies: Vec::new(),
        }
    }
}

async fn call(
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

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn credentials(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password, "name": "ci"})
}

/// A dashboard page or form answer.
struct Page {
    status: u16,
    location: Option<String>,
    retry_after: Option<u64>,
    set_cookies: Vec<String>,
    body: String,
}

/// A browser-less dashboard client that keeps cookies by hand, to see every Set-Cookie.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        if !value.is_empty() {
            self.cookies.push((name.to_owned(), value.to_owned()));
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
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

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    /// The first `<input type="hidden" name="csrf" value="…">` of a page.
    fn csrf_in(html: &str) -> String {
        html.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
    }

    /// Submits the login form (fetching it first for its CSRF token).
    async fn login(&mut self, email: &str, password: &str, next: &str) -> Page {
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
    async fn signup(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/signup").await;
        let csrf = Self::csrf_in(&form.body);
        self.post(
            "/signup",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }

    /// The session's CSRF token, from a logged-in page.
    async fn session_csrf(&mut self) -> String {
        let page = self.get("/account").await;
        assert_eq!(page.status, 200, "logged in");
        Self::csrf_in(&page.body)
    }
}

/// Sends `n` wrong-password token requests for distinct unknown emails at once through the
/// shared harness (no client address: only per-email limits, so every one costs an argon2
/// verification); returns the statuses with their Retry-After.
fn flood(api: &Api, n: usize) -> tokio::task::JoinHandle<Vec<(u16, Option<u64>, Value)>> {
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

// ---------------------------------------------------------------------------------------------
// 1. Password hashing cannot stall the runtime.

/// This test's runtime has one thread, shared by the app and the client: if argon2 ran on it,
/// a password check would hold up every other request until it was done.
#[tokio::test(flavor = "current_thread")]
async fn a_password_check_in_progress_does_not_stall_other_requests_on_the_runtime() {
    let api = Api::start().await;
    api.account("slow@example.com").await;
    // A stored hash with twenty times the usual cost, so that one check lasts a while.
    sqlx::query("UPDATE accounts SET password_hash = $1")
        .bind("$argon2id$v=19$m=19456,t=40,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .execute(&api.pool)
        .await
        .unwrap();
    let (base, http) = (
        api.base.clone(),
        reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    );
    let login = tokio::spawn({
        let http = http.clone();
        let base = base.clone();
        async move {
            call(
                &http,
                &base,
                "POST",
                "/v1/tokens",
                None,
                Some(credentials("slow@example.com", "wrong guess")),
            )
            .await
        }
    });
    tokio::time::timeout(WAIT, async {
        while rotor_control_plane::secrets::password_work_running() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the password check starts (and leaves the runtime free to notice)");
    let health = tokio::time::timeout(
        Duration::from_secs(2),
        http.get(format!("{base}/health")).send(),
    )
    .await
    .expect("/health answers while a password is being checked")
    .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(
        rotor_control_plane::secrets::password_work_running() >= 1,
        "the check was still running"
    );
    let (s, _, _) = tokio::time::timeout(Duration::from_secs(120), login)
        .await
        .expect("the slow check ends")
        .unwrap();
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_flood_beyond_the_hashing_queue_is_told_to_come_back_instead_of_piling_up() {
    let api = Api::start().await;
    let answers = tokio::time::timeout(Duration::from_secs(120), flood(&api, 200))
        .await
        .expect("the flood is answered")
        .unwrap();
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(!busy.is_empty(), "some requests are refused as busy");
    for (_, retry_after, body) in &busy {
        assert_eq!(*retry_after, Some(1));
        assert_eq!(body["error"]["code"], "busy", "{body}");
    }
    assert!(
        answers.iter().any(|(s, _, _)| *s == 401),
        "the queued ones are checked"
    );
    assert!(answers.iter().all(|(s, _, _)| *s == 401 || *s == 503));
    // And the service is fine afterwards.
    let token = api.account("after@example.com").await;
    assert!(token.starts_with("rtr_"));
}

// ---------------------------------------------------------------------------------------------
// 2. Login and sign-up limits, the same on every surface.

#[tokio::test]
async fn forty_wrong_passwords_on_the_token_endpoint_are_cut_off_after_five_with_retry_after() {
    let app = App::start("https://rotor.example").await;
    let (s, _, _) = app
        .call(
            "127.0.0.1",
            "POST",
            "/v1/signup",
            None,
            Some(credentials("alice@example.com", PASSWORD)),
        )
        .await;
    assert_eq!(s, 201);
    let mut limited = Vec::new();
    for n in 1..=40 {
        let (s, retry_after, body) = app
            .call(
                "127.0.0.1",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials(
                    "alice@example.com",
                    &format!("guess number {n}"),
                )),
            )
            .await;
        if n <= 5 {
            assert_eq!(s, 401, "guess {n}: {body}");
        } else {
            assert_eq!(s, 429, "guess {n}: {body}");
            let wait = retry_after.expect("a Retry-After header");
            assert!((1..=15 * 60).contains(&wait), "{wait}");
            assert_eq!(body["error"]["code"], "rate_limited");
            limited.push(body);
        }
    }
    // Even the right password waits now, from another address too (the limit is per email).
    let (s, retry_after, right) = app
        .call(
            "127.0.0.2",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials("alice@example.com", PASSWORD)),
        )
        .await;
    assert_eq!((s, retry_after.is_some()), (429, true), "{right}");
    // An unknown email is limited the same way, with the same answer.
    for n in 1..=6 {
        let (s, _, body) = app
            .call(
                "127.0.0.3",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials("nobody@example.com", &format!("guess {n}"))),
            )
            .await;
        assert_eq!(s, if n <= 5 { 401 } else { 429 });
        if n == 6 {
            assert_eq!(body, limited[0]);
        }
    }
}

#[tokio::test]
async fn parallel_guesses_cannot_race_past_the_limit() {
    let app = App::start("https://rotor.example").await;
    app.call(
        "127.0.0.1",
        "POST",
        "/v1/signup",
        None,
        Some(credentials("alice@example.com", PASSWORD)),
    )
    .await;
    let guesses = (0..30).map(|n| {
        app.call(
            "127.0.0.1",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials(
                "alice@example.com",
                &format!("parallel guess {n}"),
            )),
        )
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers.iter().filter(|(s, _, _)| *s == 401).count();
    let limited = answers.iter().filter(|(s, _, _)| *s == 429).count();
    assert_eq!((checked, limited), (5, 25), "{answers:?}");
}

#[tokio::test]
async fn the_dashboard_and_the_api_share_one_failure_count_per_email_and_per_address() {
    let app = App::start("https://rotor.example").await;
    app.call(
        "127.0.0.1",
        "POST",
        "/v1/signup",
        None,
        Some(credentials("alice@example.com", PASSWORD)),
    )
    .await;
    // Three wrong guesses on the API and two on the dashboard...
    for n in 0..3 {
        let (s, _, _) = app
            .call(
                "127.0.0.2",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials("alice@example.com", &format!("api guess {n}"))),
            )
            .await;
        assert_eq!(s, 401);
    }
    let mut mallory = app.browser("127.0.0.3");
    for n in 0..2 {
        let page = mallory
            .login("alice@example.com", &format!("form guess {n}"), "")
            .await;
        assert_eq!(page.status, 401);
        assert!(page.body.contains("Wrong email or password."));
    }
    // ...and both surfaces refuse, with Retry-After, even the right password.
    let page = mallory.login("alice@example.com", PASSWORD, "").await;
    assert_eq!(page.status, 429);
    assert!(page.body.contains("Too many failed attempts"));
    assert!(page.retry_after.is_some_and(|s| (1..=900).contains(&s)));
    let (s, retry_after, _) = app
        .call(
            "127.0.0.4",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials("alice@example.com", PASSWORD)),
        )
        .await;
    assert_eq!((s, retry_after.is_some()), (429, true));

    // One address guessing many emails: twenty failures on the API, then the dashboard
    // refuses that address for any email, while another address still gets an answer.
    for n in 0..20 {
        let (s, _, _) = app
            .call(
                "127.0.0.5",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials(&format!("user{n}@example.com"), "wrong guess")),
            )
            .await;
        assert_eq!(s, 401, "guess {n}");
    }
    let page = app
        .browser("127.0.0.5")
        .login("fresh@example.com", "wrong guess", "")
        .await;
    assert_eq!((page.status, page.retry_after.is_some()), (429, true));
    let page = app
        .browser("127.0.0.6")
        .login("fresh@example.com", "wrong guess", "")
        .await;
    assert_eq!(page.status, 401);
}

#[tokio::test]
async fn one_address_opening_eleven_accounts_is_refused_the_eleventh_on_both_surfaces() {
    let app = App::start("https://rotor.example").await;
    for n in 1..=10 {
        let (s, _, body) = app
            .call(
                "127.0.0.1",
                "POST",
                "/v1/signup",
                None,
                Some(credentials(&format!("bot{n}@example.com"), PASSWORD)),
            )
            .await;
        assert_eq!(s, 201, "sign-up {n}: {body}");
    }
    let (s, retry_after, body) = app
        .call(
            "127.0.0.1",
            "POST",
            "/v1/signup",
            None,
            Some(credentials("bot11@example.com", PASSWORD)),
        )
        .await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(retry_after.is_some_and(|s| (1..=3600).contains(&s)));
    let page = app
        .browser("127.0.0.1")
        .signup("bot12@example.com", PASSWORD)
        .await;
    assert_eq!(page.status, 429);
    assert!(page.retry_after.is_some());
    assert!(page.body.contains("Too many accounts"));
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE email IN ('bot11@example.com', 'bot12@example.com'))",
    )
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!exists, "neither refused account was created");
    // Another address is not affected.
    let page = app
        .browser("127.0.0.2")
        .signup("human@example.com", PASSWORD)
        .await;
    assert_eq!(page.status, 303);
}

// ---------------------------------------------------------------------------------------------
// 3. Session cookies.

#[tokio::test]
async fn over_https_the_cookies_are_host_prefixed_secure_strict_and_only_that_name_is_read() {
    let app = App::start("https://rotor.example").await;
    let mut alice = app.browser("127.0.0.1");
    let form = alice.get("/signup").await;
    let csrf_cookie = form.set_cookies.first().expect("the login CSRF cookie");
    assert!(
        csrf_cookie.starts_with("__Host-rotor_login_csrf=l_"),
        "{csrf_cookie}"
    );
    assert!(
        csrf_cookie.ends_with("; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600; Secure"),
        "{csrf_cookie}"
    );
    let csrf = Browser::csrf_in(&form.body);
    let page = alice
        .post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", "alice@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    let session = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-rotor_session="))
        .expect("a __Host- session cookie");
    assert!(
        session.ends_with("; Path=/; HttpOnly; SameSite=Strict; Max-Age=604800; Secure"),
        "{session}"
    );
    assert!(!session.contains("Domain"), "{session}");
    assert_eq!(alice.get("/projects").await.status, 200);

    // The same session token under the plain-HTTP name is not a session here.
    let token = alice.cookie("__Host-rotor_session").unwrap().to_owned();
    let mut replay = app.browser("127.0.0.1");
    replay.set("rotor_session", &token);
    let page = replay.get("/projects").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/login?next=/projects"))
    );
    // Nor is the login form's CSRF token under its plain name.
    let mut eve = app.browser("127.0.0.1");
    eve.set("rotor_login_csrf", "l_0123456789abcdef0123");
    let page = eve
        .post(
            "/login",
            &[
                ("csrf", "l_0123456789abcdef0123"),
                ("email", "alice@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);

    // Logging out clears the __Host- cookie.
    let csrf = alice.session_csrf().await;
    let page = alice.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, 303);
    assert!(
        page.set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-rotor_session=;") && c.contains("Max-Age=0")),
        "{:?}",
        page.set_cookies
    );
}

#[tokio::test]
async fn over_plain_http_the_cookies_keep_their_names_and_are_strict_but_not_secure() {
    let app = App::start("http://127.0.0.1:9").await;
    let mut alice = app.browser("127.0.0.1");
    let page = alice.signup("alice@example.com", PASSWORD).await;
    assert_eq!(page.status, 303);
    let session = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("rotor_session="))
        .expect("a rotor_session cookie");
    assert!(
        session.ends_with("; Path=/; HttpOnly; SameSite=Strict; Max-Age=604800"),
        "{session}"
    );
    assert!(alice.cookie("rotor_login_csrf").is_some());
    assert_eq!(alice.get("/projects").await.status, 200);
    // A __Host- cookie (which a browser would refuse here anyway) is not read.
    let token = alice.cookie("rotor_session").unwrap().to_owned();
    let mut other = app.browser("127.0.0.1");
    other.set("__Host-rotor_session", &token);
    assert_eq!(other.get("/projects").await.status, 303);
}

#[tokio::test]
async fn a_link_from_another_site_reloads_the_login_page_once_to_pick_up_the_strict_cookie() {
    let app = App::start("https://rotor.example").await;
    let mut alice = app.browser("127.0.0.1");
    assert_eq!(
        alice.signup("alice@example.com", PASSWORD).await.status,
        303
    );
    // A navigation from another site arrives without the Strict cookie (none is sent here):
    // the login page reloads itself (a same-site navigation, which carries it) instead of
    // asking a logged-in user for their password.
    let cross_site = |path: &str| {
        app.client("127.0.0.1")
            .get(format!("{}{path}", app.base))
            .header("sec-fetch-site", "cross-site")
            .send()
    };
    let page = cross_site("/login?next=/account").await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("http-equiv=\"refresh\""), "{body}");
    assert!(!body.contains("name=\"password\""));
    // The reload carries the cookie and goes on.
    let page = alice.get("/login?next=/account").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/account"))
    );
    // Without a session the reload shows the form as usual.
    let mut stranger = app.browser("127.0.0.2");
    let page = stranger.get("/login").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"password\""));
}

// ---------------------------------------------------------------------------------------------
// 4. `next=` never leaves the site.

#[tokio::test]
async fn login_redirects_never_leave_the_site() {
    let app = App::start("https://rotor.example").await;
    app.call(
        "127.0.0.1",
        "POST",
        "/v1/signup",
        None,
        Some(credentials("alice@example.com", PASSWORD)),
    )
    .await;
    let hostile = [
        "/%09/evil.example",
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "/\\\\evil.example",
        "https://evil.example",
        "/%2F%2Fevil.example",
        "/%2f/evil.example",
        "/%252F%252Fevil.example",
        "/%5Cevil.example",
        "/%0a/evil.example",
        "/\r\nSet-Cookie: x=1",
        "/%0d%0aSet-Cookie:%20x=1",
        "/%7f/evil.example",
        "/projects/../..//evil.example",
        "/%2e%2e//evil.example",
        "javascript:alert(1)",
        "evil.example",
        "",
    ];
    for next in hostile {
        let mut b = app.browser("127.0.0.1");
        let page = b.login("alice@example.com", PASSWORD, next).await;
        assert_eq!(
            (page.status, page.location.as_deref()),
            (303, Some("/projects")),
            "next={next:?}"
        );
        // Already logged in, the login page follows the same rule.
        let page = b.get(&format!("/login?next={}", urlencode(next))).await;
        assert_eq!(
            page.location.as_deref(),
            Some("/projects"),
            "GET next={next:?}"
        );
        // And the login form does not carry it along.
        let page = app
            .browser("127.0.0.1")
            .get(&format!("/login?next={}", urlencode(next)))
            .await;
        assert!(
            page.body.contains("name=\"next\" value=\"\""),
            "form next={next:?}"
        );
    }
    let mut b = app.browser("127.0.0.1");
    let page = b
        .login("alice@example.com", PASSWORD, "/projects/prj_x?tab=keys")
        .await;
    assert_eq!(page.location.as_deref(), Some("/projects/prj_x?tab=keys"));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 5. Password changes and expiring management tokens.

#[tokio::test]
async fn a_management_token_stops_working_when_it_expires() {
    let app = App::start("https://rotor.example").await;
    app.call(
        "127.0.0.1",
        "POST",
        "/v1/signup",
        None,
        Some(credentials("alice@example.com", PASSWORD)),
    )
    .await;
    let mut body = credentials("alice@example.com", PASSWORD);
    body["expires_in_days"] = json!(30);
    let (s, _, short) = app
        .call("127.0.0.1", "POST", "/v1/tokens", None, Some(body))
        .await;
    assert_eq!(s, 201, "{short}");
    let expires: chrono::DateTime<chrono::Utc> = short["expires_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("expires_at");
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.1).contains(&days), "{days}");
    let short = short["token"].as_str().unwrap().to_owned();
    let (s, _, forever) = app
        .call(
            "127.0.0.1",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials("alice@example.com", PASSWORD)),
        )
        .await;
    assert_eq!((s, &forever["expires_at"]), (201, &Value::Null));
    let forever = forever["token"].as_str().unwrap().to_owned();
    let (s, _, list) = app
        .call("127.0.0.1", "GET", "/v1/tokens", Some(&short), None)
        .await;
    assert_eq!(s, 200);
    let listed: Vec<&Value> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["expires_at"])
        .collect();
    assert!(
        listed.len() == 2 && listed[0].is_string() && listed[1].is_null(),
        "{list}"
    );

    // Time passes.
    sqlx::query("UPDATE management_tokens SET expires_at = now() - interval '1 minute' WHERE expires_at IS NOT NULL")
        .execute(&app.pool)
        .await
        .unwrap();
    let (s, _, body) = app
        .call("127.0.0.1", "GET", "/v1/projects", Some(&short), None)
        .await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["error"]["message"], "token expired");
    let (s, _, _) = app
        .call("127.0.0.1", "GET", "/v1/projects", Some(&forever), None)
        .await;
    assert_eq!(s, 200);

    // Lifetimes out of range, or not whole days, are refused by name.
    for bad in [json!(0), json!(366), json!(-1), json!(1.5), json!("7")] {
        let mut body = credentials("alice@example.com", PASSWORD);
        body["expires_in_days"] = bad.clone();
        let (s, _, answer) = app
            .call("127.0.0.1", "POST", "/v1/tokens", None, Some(body))
            .await;
        assert_eq!(s, 400, "{bad}: {answer}");
        assert_eq!(answer["error"]["field"], "expires_in_days");
    }
}

#[tokio::test]
async fn the_dashboard_token_form_sets_an_expiry_and_lists_it() {
    let app = App::start("https://rotor.example").await;
    let mut alice = app.browser("127.0.0.1");
    assert_eq!(
        alice.signup("alice@example.com", PASSWORD).await.status,
        303
    );
    let csrf = alice.session_csrf().await;
    let page = alice
        .post(
            "/account/tokens",
            &[("csrf", &csrf), ("name", "ci"), ("expires_in_days", "7")],
        )
        .await;
    assert_eq!(page.status, 201);
    let expires: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT expires_at FROM management_tokens")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let expires = expires.expect("an expiry");
    assert!(page
        .body
        .contains(&expires.format("%Y-%m-%d %H:%M UTC").to_string()));
    let page = alice
        .post(
            "/account/tokens",
            &[("csrf", &csrf), ("name", "ci"), ("expires_in_days", "400")],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("from 1 to 365"));
}

#[tokio::test]
async fn a_password_change_revokes_the_management_tokens_and_ends_the_other_sessions() {
    let app = App::start("https://rotor.example").await;
    let mut here = app.browser("127.0.0.1");
    assert_eq!(here.signup("alice@example.com", PASSWORD).await.status, 303);
    let mut stolen = app.browser("127.0.0.2");
    assert_eq!(
        stolen.login("alice@example.com", PASSWORD, "").await.status,
        303
    );
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (s, _, b) = app
            .call(
                "127.0.0.1",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials("alice@example.com", PASSWORD)),
            )
            .await;
        assert_eq!(s, 201);
        tokens.push(b["token"].as_str().unwrap().to_owned());
    }

    let csrf = here.session_csrf().await;
    let new_password = "a new long password";
    let page = here
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("new", new_password),
                ("confirm", new_password),
                ("revoke_tokens", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("1 other session(s) were logged out")
            && page.body.contains("2 management token(s) were revoked"),
        "{}",
        page.body
    );
    for t in &tokens {
        let (s, _, _) = app
            .call("127.0.0.1", "GET", "/v1/projects", Some(t), None)
            .await;
        assert_eq!(s, 401, "an old token is dead");
    }
    assert_eq!(
        stolen.get("/projects").await.status,
        303,
        "other session ended"
    );
    assert_eq!(here.get("/projects").await.status, 200, "this one lives on");

    // Unticked, the tokens survive (the other sessions still end).
    let (s, _, b) = app
        .call(
            "127.0.0.1",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials("alice@example.com", new_password)),
        )
        .await;
    assert_eq!(s, 201);
    let kept = b["token"].as_str().unwrap().to_owned();
    let page = here
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", new_password),
                ("new", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (s, _, _) = app
        .call("127.0.0.1", "GET", "/v1/projects", Some(&kept), None)
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn guessing_the_current_password_on_the_password_form_is_limited_like_a_login() {
    let app = App::start("https://rotor.example").await;
    let mut thief = app.browser("127.0.0.1");
    assert_eq!(
        thief.signup("alice@example.com", PASSWORD).await.status,
        303
    );
    let csrf = thief.session_csrf().await;
    let mut statuses = Vec::new();
    for n in 0..6 {
        let guess = format!("current guess {n}");
        let page = thief
            .post(
                "/account/password",
                &[
                    ("csrf", &csrf),
                    ("current", &guess),
                    ("new", "the thief's password"),
                    ("confirm", "the thief's password"),
                ],
            )
            .await;
        statuses.push((page.status, page.retry_after.is_some()));
    }
    assert_eq!(
        statuses,
        [
            (422, false),
            (422, false),
            (422, false),
            (422, false),
            (422, false),
            (429, true)
        ]
    );
}

#[tokio::test]
async fn the_openapi_document_describes_token_expiry() {
    let api = Api::start().await;
    let (s, doc) = api.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    let field = &doc["components"]["schemas"]["TokenRequest"]["properties"]["expires_in_days"];
    assert_eq!(
        (&field["minimum"], &field["maximum"]),
        (&json!(1), &json!(365))
    );
}
