//! The dashboard over a real control plane: the whole customer journey in Debian's Chromium
//! (tests/clients/node/dashboard.mjs, screenshots under target/screenshots/dashboard), and the
//! session and CSRF rules checked request by request: cookie flags, CSRF on every form, no
//! session fixation, the same answer for an unknown email and a wrong password, the login rate
//! limit, no open redirect, other accounts' projects as 404, and cacheable static assets.

mod cp;

use std::time::Duration;

use anyhow::{Context, Result};
use cp::browser::Browser;
use cp::ControlPlane;
use rotor_e2e::ClientScript;
use serde_json::Value;

fn screenshots_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/dashboard")
}

#[tokio::test]
async fn a_customer_signs_up_builds_a_project_and_sees_a_curl_publish_in_the_console_and_the_chart(
) -> Result<()> {
    let cp = ControlPlane::start().await?;
    let shots = screenshots_dir();
    let out = ClientScript::node("dashboard.mjs")
        .envs([
            ("ROTOR_BASE_URL", cp.base.as_str()),
            ("ROTOR_SCREENSHOTS", shots.to_str().context("path")?),
        ])
        .timeout(Duration::from_secs(150))
        .run()
        .await?
        .ensure_success()?;
    let o: Value = out.stdout_json()?;

    assert!(
        o["weak_password_error"]
            .as_str()
            .unwrap_or_default()
            .contains("at least 10 characters"),
        "{o}"
    );
    assert!(o["email_kept"]
        .as_str()
        .unwrap_or_default()
        .starts_with("owner-"));
    assert_eq!(o["session_cookie"]["httpOnly"], true, "{o}");
    assert_eq!(o["session_cookie"]["sameSite"], "Strict", "{o}");
    let slug = o["project_slug"].as_str().context("slug")?;
    assert_eq!(
        o["websocket_endpoint"],
        format!(
            "{}/t/{slug}/connection/websocket",
            cp.base.replacen("http://", "ws://", 1)
        )
    );
    assert_eq!(o["api_key_prefix"], "rk_");
    assert_eq!(o["key_hidden_after_reload"], true, "a key is shown once");
    assert_eq!(o["secret_revealed"], true);
    assert_eq!(o["namespace_presence_checked"], true, "the chat preset");
    assert!(
        o["namespace_bad_value_error"]
            .as_str()
            .unwrap_or_default()
            .contains("whole number"),
        "{o}"
    );
    assert_eq!(
        o["namespace_bad_value_kept"], "lots",
        "what was typed is kept"
    );
    assert_eq!(o["namespace_saved_history"], "50");
    assert!(o["curl_reply"]["result"].is_object(), "{o}");
    assert_eq!(o["console_received_curl"], true);
    assert!(
        o["presence_text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("1 client"),
        "{o}"
    );
    assert!(o["usage_published"].as_i64().unwrap_or(0) >= 2, "{o}");
    assert_eq!(o["management_token_prefix"], "rtr_");
    for (page, overflow) in o["mobile_overflow"].as_object().context("mobile")? {
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{page} scrolls sideways at 375 px by {overflow} px"
        );
    }
    assert_eq!(o["csrf_less_post_status"], 403);
    assert_eq!(o["foreign_project_status"], 404);
    assert_eq!(o["foreign_usage_status"], 404);
    assert_eq!(o["replayed_cookie_status"], 303, "{o}");
    assert_eq!(o["replayed_cookie_location"], "/login?next=/projects");
    assert_eq!(
        o["console_errors"],
        serde_json::json!([]),
        "no script errors"
    );
    let count = std::fs::read_dir(&shots)?.count();
    assert!(count >= 15, "screenshots of each page ({count})");
    Ok(())
}

#[tokio::test]
async fn sessions_resist_fixation_csrf_enumeration_brute_force_and_open_redirects() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mut alice = Browser::new(&cp.base);
    assert_eq!(
        alice
            .signup("alice@example.com", "alice's long password")
            .await?,
        303
    );
    // Logging out and in again (with a session id planted by an attacker).
    let planted = "s_attacker_chosen_value";
    alice.set("rotor_session", planted);
    let csrf = alice.login_form_csrf().await?;
    let (status, _, location, set) = alice
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "alice@example.com"),
                ("password", "alice's long password"),
                ("next", "//evil.example/steal"),
            ],
        )
        .await?;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/projects"), "no open redirect");
    let session_cookie = set
        .iter()
        .find(|c| c.starts_with("rotor_session="))
        .context("a new session cookie")?;
    assert!(session_cookie.contains("HttpOnly"), "{session_cookie}");
    assert!(
        session_cookie.contains("SameSite=Strict"),
        "{session_cookie}"
    );
    assert!(!session_cookie.contains("Secure"), "plain-HTTP public URL");
    assert_ne!(
        alice.cookie("rotor_session"),
        Some(planted),
        "fresh session id"
    );
    let (status, html, _) = alice.get("/projects").await?;
    assert_eq!(status, 200);

    // Forms need the session's CSRF token.
    let csrf = Browser::csrf_in(&html);
    assert!(csrf.starts_with("c_"), "{csrf}");
    let (status, _, _, _) = alice.post("/projects", &[("name", "no token")]).await?;
    assert_eq!(status, 403);
    let (status, _, _, _) = alice
        .post("/projects", &[("csrf", "c_wrong"), ("name", "wrong token")])
        .await?;
    assert_eq!(status, 403);
    let (status, _, location, _) = alice
        .post("/projects", &[("csrf", &csrf), ("name", "Alice App")])
        .await?;
    assert_eq!(status, 303);
    let project_path = location.context("redirect to the project")?;
    let project_path = project_path
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    // The login form itself needs its pre-session token.
    let mut eve = Browser::new(&cp.base);
    let (status, _, _, _) = eve
        .post(
            "/login",
            &[("email", "alice@example.com"), ("password", "x")],
        )
        .await?;
    assert_eq!(status, 403, "login without the form's CSRF cookie");

    // Another account: every page of Alice's project is a 404.
    assert_eq!(
        eve.signup("eve@example.com", "eve's long password").await?,
        303
    );
    for suffix in [
        "",
        "/keys",
        "/namespaces",
        "/usage",
        "/usage/data",
        "/console",
    ] {
        let (status, _, _) = eve.get(&format!("{project_path}{suffix}")).await?;
        assert_eq!(status, 404, "{project_path}{suffix}");
    }
    let (_, html, _) = eve.get("/projects").await?;
    let eve_csrf = Browser::csrf_in(&html);
    let (status, _, _, _) = eve
        .post(
            &format!("{project_path}/secret/reveal"),
            &[("csrf", &eve_csrf)],
        )
        .await?;
    assert_eq!(status, 404);
    let (status, _, _, _) = eve
        .post(
            &format!("{project_path}/delete"),
            &[("csrf", &eve_csrf), ("confirm_slug", "alice-app")],
        )
        .await?;
    assert_eq!(status, 404);
    let (status, _, _) = eve.get("/projects/prj_..%2F..%2Fetc").await?;
    assert_eq!(status, 404);

    // Unknown email and wrong password: the same answer. Then the limit.
    let mut mallory = Browser::new(&cp.base);
    let csrf = mallory.login_form_csrf().await?;
    let (s1, body1, _, _) = mallory
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "nobody@example.com"),
                ("password", "whatever it is"),
            ],
        )
        .await?;
    let (s2, body2, _, _) = mallory
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "alice@example.com"),
                ("password", "whatever it is"),
            ],
        )
        .await?;
    assert_eq!((s1, s2), (401, 401));
    assert!(
        body1.contains("Wrong email or password.") && body2.contains("Wrong email or password.")
    );
    for _ in 0..4 {
        mallory
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("email", "alice@example.com"),
                    ("password", "guess"),
                ],
            )
            .await?;
    }
    let (status, body, _, _) = mallory
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "alice@example.com"),
                ("password", "alice's long password"),
            ],
        )
        .await?;
    assert_eq!(
        status, 429,
        "even the right password waits after five failures"
    );
    assert!(body.contains("Too many failed attempts"));

    // Static assets: versioned URLs are immutable, and ETags revalidate.
    let (status, html, _) = alice.get("/projects").await?;
    assert_eq!(status, 200);
    let css = html
        .split("href=\"/static/app.css?v=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("versioned stylesheet link")?
        .to_owned();
    let resp = alice
        .http
        .get(format!("{}/static/app.css?v={css}", cp.base))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = resp.headers()["etag"].clone();
    let again = alice
        .http
        .get(format!("{}/static/app.css", cp.base))
        .header("if-none-match", etag)
        .send()
        .await?;
    assert_eq!(again.status().as_u16(), 304);
    Ok(())
}
