//! Attacks on dashboard sessions and management tokens, performed against the real HTTP app
//! and shown to fail: cookies that could be planted or sent cross-site, `next=` open
//! redirects, and stolen management tokens that outlive a password change or their expiry.

mod auth;
mod common;

use auth::*;
use common::Api;
use serde_json::{json, Value};

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
    // POST/redirect/GET: the token waits for the account page, shown once.
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/account#tokens"));
    let page = alice.get("/account").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"new-token\""), "{}", page.body);
    let expires: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT expires_at FROM management_tokens")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let expires = expires.expect("an expiry");
    assert!(page
        .body
        .contains(&expires.format("%Y-%m-%d %H:%M UTC").to_string()));
    let again = alice.get("/account").await;
    assert!(!again.body.contains("id=\"new-token\""), "shown once");
    let page = alice
        .post(
            "/account/tokens",
            &[("csrf", &csrf), ("name", "ci"), ("expires_in_days", "400")],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = alice.get("/account").await;
    assert!(page.body.contains("from 1 to 365"), "{}", page.body);
    assert!(page.body.contains("value=\"ci\""), "what was typed is kept");
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
        .change_password(&csrf, PASSWORD, new_password, true)
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/account"));
    let page = here.get("/account").await;
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
    // The change renewed this browser's session, and with it the CSRF token.
    let csrf = here.session_csrf().await;
    let page = here
        .change_password(&csrf, new_password, PASSWORD, false)
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let (s, _, _) = app
        .call("127.0.0.1", "GET", "/v1/projects", Some(&kept), None)
        .await;
    assert_eq!(s, 200);
}

/// A copy of the session cookie taken before a password change (a stolen cookie) is refused
/// after it: the change gives the browser that made it a fresh session and ends the old one.
#[tokio::test]
async fn a_password_change_replaces_the_current_session_so_a_copied_cookie_is_refused() {
    let app = App::start("https://rotor.example").await;
    let mut here = app.browser("127.0.0.1");
    assert_eq!(here.signup("alice@example.com", PASSWORD).await.status, 303);
    let copied = here.cookie("__Host-rotor_session").unwrap().to_owned();

    let csrf = here.session_csrf().await;
    let new_password = "a new long password";
    let page = here
        .change_password(&csrf, PASSWORD, new_password, false)
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let fresh = here.cookie("__Host-rotor_session").unwrap().to_owned();
    assert_ne!(fresh, copied, "the change sets a new session cookie");
    assert!(
        page.set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-rotor_session=")
                && c.ends_with("; Path=/; HttpOnly; SameSite=Strict; Max-Age=604800; Secure")),
        "{:?}",
        page.set_cookies
    );

    // The browser that changed it carries on, and sees the notice left for its new session.
    let page = here.get("/account").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Password changed."), "{}", page.body);
    // The copy of the old cookie goes to the login page.
    let mut thief = app.browser("127.0.0.2");
    thief.set("__Host-rotor_session", &copied);
    let page = thief.get("/projects").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/login?next=/projects"))
    );
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
            .change_password(&csrf, &guess, "the thief's password", false)
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
