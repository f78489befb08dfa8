//! The dashboard over a real control plane: the whole customer journey in Debian's Chromium
//! (tests/clients/node/dashboard.mjs, screenshots under target/screenshots/dashboard), and the
//! session and CSRF rules checked request by request: cookie flags, CSRF on every form, no
//! session fixation, the same answer for an unknown email and a wrong password, the login rate
//! limit, no open redirect, other accounts' projects as 404, and cacheable static assets.

use std::time::Duration;

use anyhow::{Context, Result};
use rotor_e2e::control_plane::browser::Browser;
use rotor_e2e::control_plane::ControlPlane;
use rotor_e2e::ClientScript;
use serde_json::{json, Value};

fn screenshots_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/dashboard")
}

/// Runs a Playwright journey (`tests/clients/node/<script>`) against `cp` in Chromium, keeping
/// its screenshots in `shots`; what it printed as JSON.
async fn browser_journey(
    cp: &ControlPlane,
    script: &str,
    shots: std::path::PathBuf,
) -> Result<Value> {
    let out = ClientScript::node(script)
        .envs([
            ("ROTOR_BASE_URL", cp.base.as_str()),
            ("ROTOR_SCREENSHOTS", shots.to_str().context("path")?),
        ])
        .timeout(Duration::from_secs(150))
        .run()
        .await?
        .ensure_success()?;
    out.stdout_json()
}

#[tokio::test]
async fn a_customer_signs_up_builds_a_project_and_sees_a_curl_publish_in_the_console_and_the_chart(
) -> Result<()> {
    let cp = ControlPlane::start().await?;
    let shots = screenshots_dir();
    let o = browser_journey(&cp, "dashboard.mjs", shots.clone()).await?;

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

    // The namespace editor: words for labels, the common options first, the rest folded,
    // help texts with code spans instead of backticks.
    assert_eq!(o["namespace_first_group"], "Common options", "{o}");
    assert!(o["namespace_folded_groups"].as_u64() >= Some(3), "{o}");
    assert_eq!(
        o["namespace_regex_visible"], false,
        "advanced options start folded"
    );
    assert_eq!(
        o["namespace_history_label"],
        "Publications kept per channel"
    );
    assert_eq!(o["namespace_help_has_backticks"], false);
    assert!(o["namespace_help_code_spans"].as_u64() >= Some(1), "{o}");

    // Keys: the first characters only, the last use as the tenant reported it, scopes.
    assert_eq!(o["key_prefix_shown"], o["key_prefix_expected"], "{o}");
    assert_eq!(o["key_page_has_whole_key"], false);
    assert!(
        o["key_last_used"]
            .as_str()
            .unwrap_or_default()
            .ends_with(" UTC"),
        "{o}"
    );
    assert_eq!(o["key_scope_backend"], "All methods");
    assert_eq!(o["key_scope_publisher"], "Publish only");
    assert!(o["publisher_publish_reply"]["result"].is_object(), "{o}");
    for read in ["publisher_history_reply", "publisher_presence_reply"] {
        assert_eq!(
            o[read],
            json!({"error": {"code": 103, "message": "permission denied"}}),
            "{read}: {o}"
        );
    }
    assert!(
        o["duplicate_key_error"]
            .as_str()
            .unwrap_or_default()
            .contains("already has a key called \"publisher\""),
        "{o}"
    );
    assert_eq!(o["duplicate_key_kept"], "publisher");
    assert_eq!(o["keys_after_duplicate"], 2, "no second key of that name");
    assert_eq!(o["revoke_confirm_title"], "Revoke the key “publisher”?");
    assert_eq!(
        o["keys_before_confirm"], 2,
        "nothing revoked before the confirmation"
    );
    assert!(o["revoked_notice"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Key revoked"));
    assert_eq!(o["keys_after_revoke"], 1);
    assert_eq!(o["keys_after_revoke_reload"], 1);
    assert_eq!(o["revoked_notice_after_reload"], 0);
    assert_eq!(o["revoked_key_status"], 401);

    // Settings: saved once, said in words, tested without reaching this machine.
    assert!(o["settings_notice"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Settings saved"));
    assert_eq!(o["settings_title_after_save"], "Browser Demo EU");
    assert_eq!(o["settings_notice_after_reload"], 0);
    assert_eq!(o["settings_anonymous_after_reload"], true);
    assert_eq!(o["settings_user_status_after_reload"], true);
    assert!(
        o["settings_error"]
            .as_str()
            .unwrap_or_default()
            .contains("“shop.example.com” is not an origin"),
        "{o}"
    );
    assert_eq!(o["settings_error_kept"], "shop.example.com");
    assert_eq!(
        o["settings_origins_after_error"],
        "https://shop.example.com"
    );
    let probe = o["probe_text"].as_str().unwrap_or_default();
    assert!(
        probe.contains("could not be reached")
            && (probe.contains("not public") || probe.contains("is not allowed")),
        "{probe}"
    );
    assert_eq!(o["probe_url_kept"], "http://127.0.0.1:9/connect");
    assert_eq!(o["probe_after_reload"], 0);
    assert_eq!(o["probe_saved_nothing"], true);

    // The audit log: newest first, in words, by "You".
    let audit: Vec<(String, String)> = o["audit_rows"]
        .as_array()
        .context("audit rows")?
        .iter()
        .map(|r| {
            (
                r["who"].as_str().unwrap_or_default().to_owned(),
                r["what"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let position = |what: &str| audit.iter().position(|(_, w)| w.starts_with(what));
    let renamed = position("Renamed the project to “Browser Demo EU”").context("rename")?;
    let revoked = position("Revoked the API key “publisher”").context("revoke")?;
    let created = position("Created the API key “publisher” (publish only)").context("create")?;
    let project = position("Created the project “Browser Demo”").context("project")?;
    assert!(
        renamed < revoked && revoked < created && created < project,
        "{audit:?}"
    );
    assert!(audit.iter().all(|(who, _)| who == "You"), "{audit:?}");
    assert!(
        audit.iter().all(|(_, what)| !what.contains('_')),
        "{audit:?}"
    );
    assert_eq!(
        o["account_audit_projects"],
        json!(["Browser Demo EU"]),
        "{o}"
    );
    assert_eq!(o["account_audit_rows"].as_u64(), Some(audit.len() as u64));
    for (page, overflow) in o["mobile_overflow"].as_object().context("mobile")? {
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{page} scrolls sideways at 375 px by {overflow} px"
        );
    }
    assert_eq!(o["csrf_less_post_status"], 403);
    assert_eq!(o["foreign_project_status"], 404);
    assert_eq!(o["foreign_usage_status"], 404);
    assert_eq!(o["foreign_audit_status"], 404);
    assert_eq!(o["foreign_settings_status"], 404);
    assert_eq!(o["foreign_account_audit_mentions_project"], false);
    assert_eq!(o["replayed_cookie_status"], 303, "{o}");
    assert_eq!(o["replayed_cookie_location"], "/login?next=/projects");
    assert_eq!(o["console_errors"], json!([]), "no script errors");
    let count = std::fs::read_dir(&shots)?.count();
    assert!(count >= 24, "screenshots of each page ({count})");
    Ok(())
}

#[tokio::test]
async fn a_fresh_project_runs_the_copied_quick_start_and_no_reload_repeats_a_change() -> Result<()>
{
    let cp = ControlPlane::start().await?;
    let o = browser_journey(&cp, "dashboard_fresh.mjs", screenshots_dir().join("fresh")).await?;

    // 1. The quick start, copied from the page and run verbatim, works on a fresh project.
    assert!(
        o["starter_hint"]
            .as_str()
            .unwrap_or_default()
            .contains("updates"),
        "{o}"
    );
    let js = o["snippet_js"].as_str().context("js snippet")?;
    assert!(js.contains("newSubscription('updates:lobby')"), "{js}");
    assert!(o["snippet_curl"]
        .as_str()
        .unwrap_or_default()
        .contains("\"channel\": \"updates:lobby\""));
    assert_eq!(o["snippet_subscription_channel"], "updates:lobby");
    assert_eq!(o["snippet_subscribed"], true, "{o}");
    assert!(
        o["curl_reply"]["result"]["offset"].as_u64() >= Some(1),
        "{o}"
    );
    assert_eq!(o["snippet_received"], json!({"text": "hello"}), "{o}");
    assert_eq!(o["python_token_sub"], "7");
    assert_eq!(
        o["console_channel"], "updates:lobby",
        "the console uses it too"
    );
    assert!(
        o["quickstart_channel_text"]
            .as_str()
            .unwrap_or_default()
            .contains("error 103"),
        "the page says why the namespace is there: {o}"
    );

    // 2. Every change redirects; reloading the page it lands on changes nothing.
    assert!(o["created_notice"]
        .as_str()
        .unwrap_or_default()
        .contains("Project created"));
    assert_eq!(o["created_notice_after_reload"], 0);
    let keys_url = |suffix: &str| format!("{}/projects/", cp.base) + suffix;
    for field in ["key_create_url", "reveal_url", "rotate_url", "revoke_url"] {
        let url = o[field].as_str().unwrap_or_default();
        assert!(
            url.starts_with(&keys_url("prj_"))
                && url.split('#').next().unwrap_or_default().ends_with("/keys"),
            "{field}: {url}"
        );
    }
    assert_eq!(o["keys_after_create_reload"], 1, "no second key: {o}");
    assert_eq!(o["key_shown_after_reload"], false, "a key is shown once");
    assert_eq!(o["secret_shown_after_reveal_reload"], 0);
    assert_eq!(o["rotated_differs"], true);
    assert!(o["rotate_notice"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Secret rotated"));
    assert_eq!(o["secret_shown_after_rotate_reload"], 0);
    assert_eq!(
        o["secret_same_after_rotate_reload"], true,
        "no second rotation: {o}"
    );
    assert!(o["revoke_notice"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Key revoked"));
    assert_eq!(o["keys_after_revoke"], 1);
    assert_eq!(o["keys_after_revoke_reload"], 1);
    assert!(
        o["revoke_confirm_url"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/revoke"),
        "revoking goes through its confirmation page: {o}"
    );
    assert!(o["token_create_url"]
        .as_str()
        .unwrap_or_default()
        .ends_with("/account#tokens"));
    assert_eq!(o["tokens_after_create_reload"], 1, "no second token: {o}");
    assert_eq!(o["token_shown_after_reload"], false);
    assert!(
        o["token_revoke_confirm_url"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/revoke"),
        "revoking a token goes through its confirmation page: {o}"
    );
    assert!(o["token_revoke_notice"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Token revoked"));
    assert_eq!(o["tokens_after_revoke_reload"], 0);
    assert_eq!(o["token_revoke_notice_after_reload"], 0);

    // 3. No dead ends: branded pages with the signed-in header and a way on.
    let email = o["delete_error_header"].as_str().context("header")?;
    assert!(email.starts_with("fresh-"), "{o}");
    assert!(
        o["delete_error"]
            .as_str()
            .unwrap_or_default()
            .contains("Nothing was deleted"),
        "{o}"
    );
    assert!(o["delete_error_url"]
        .as_str()
        .unwrap_or_default()
        .ends_with("#danger"));
    assert_eq!(o["delete_error_after_reload"], 0);
    assert_eq!(o["project_still_there"], true);
    assert_eq!(o["not_found"]["status"], 404);
    assert_eq!(o["not_found"]["title"], "Page not found");
    assert_eq!(o["not_found"]["header"], email);
    assert_eq!(o["not_found"]["next"], "/projects");
    assert_eq!(o["get_on_action"]["status"], 200);
    assert!(o["get_on_action"]["url"]
        .as_str()
        .unwrap_or_default()
        .ends_with("/keys"));
    assert_eq!(o["wrong_method"]["status"], 405);
    assert_eq!(o["wrong_method"]["branded"], true);
    assert_eq!(o["wrong_method"]["signed_in_header"], true);
    let ns_error = o["namespace_error"].as_str().unwrap_or_default();
    assert!(
        ns_error.contains("“Keep history for”")
            && !ns_error.contains('`')
            && !ns_error.contains("channel.namespaces"),
        "{ns_error}"
    );
    assert_eq!(o["console_errors"], json!([]), "no script errors");

    // The REST API keeps its JSON 404.
    let resp = reqwest::get(format!("{}/v1/no-such-thing", cp.base)).await?;
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "not_found");
    Ok(())
}

#[tokio::test]
async fn a_project_made_through_the_api_is_told_which_namespace_the_quick_start_needs() -> Result<()>
{
    let cp = ControlPlane::start().await?;
    let mut owner = Browser::new(&cp.base);
    let password = "a long enough password";
    assert_eq!(owner.signup("api@example.com", password).await?, 303);
    let token: Value = owner
        .http
        .post(format!("{}/v1/tokens", cp.base))
        .json(&json!({"email": "api@example.com", "password": password, "name": "ci"}))
        .send()
        .await?
        .json()
        .await?;
    let token = token["token"].as_str().context("management token")?;
    let project: Value = owner
        .http
        .post(format!("{}/v1/projects", cp.base))
        .bearer_auth(token)
        .json(&json!({"name": "Made by API"}))
        .send()
        .await?
        .json()
        .await?;
    let id = project["id"].as_str().context("project id")?;
    let namespaces: Value = owner
        .http
        .get(format!("{}/v1/projects/{id}/namespaces", cp.base))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(namespaces["namespaces"], json!([]), "the API adds none");

    let (status, html, _) = owner.get(&format!("/projects/{id}")).await?;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"quickstart-not-ready\""), "{html}");
    assert!(html.contains("error 103"), "it says what would happen");
    let csrf = Browser::csrf_in(&html);
    let (status, _, location, _) = owner
        .post(
            &format!("/projects/{id}/namespaces"),
            &[("csrf", &csrf), ("name", "updates"), ("preset", "feed")],
        )
        .await?;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some(format!("/projects/{id}/namespaces/updates").as_str())
    );
    let (_, html, _) = owner.get(&format!("/projects/{id}")).await?;
    assert!(!html.contains("quickstart-not-ready"), "{html}");
    assert!(html.contains("id=\"quickstart-channel\""), "{html}");
    assert!(
        html.contains("newSubscription(&#39;updates:lobby&#39;)"),
        "{html}"
    );
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
