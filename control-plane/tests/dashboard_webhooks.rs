//! Webhooks on the dashboard's settings page, against a real database, request by request:
//! saved into the project's settings with the signing secret sealed, a blank secret field
//! keeping the stored one, the secret never shown again nor kept in the flash of a mistaken
//! form, and mistakes (the form's and the data plane's rules) naming their field.

mod auth;
mod common;

use auth::*;
use serde_json::{json, Value};

/// Webhooks from the settings page: saved into `settings.webhooks` with the secret sealed, a
/// blank secret field keeps the stored secret, the secret never comes back in the page or in
/// the flash that keeps a mistaken form, and a project that is not running says so where its
/// deliveries would be.
#[tokio::test]
async fn webhooks_are_set_from_the_settings_page_and_the_secret_never_comes_back() {
    const SECRET: &str = "whsec-dashboard-0123456789";
    let app = App::start("https://rotor.example").await;
    let (mut b, project, csrf) = owner(&app, "127.0.0.19", "hooks@example.com").await;
    let path = format!("/projects/{project}/settings");
    let form = |secret: &'static str, grace: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "Shop".to_owned()),
            ("webhooks_enabled", "on".to_owned()),
            (
                "webhooks_url",
                "https://backend.example.com/hooks".to_owned(),
            ),
            ("webhooks_secret", secret.to_owned()),
            ("webhooks_grace", grace.to_owned()),
            ("wh_member_added", "on".to_owned()),
            ("wh_member_removed", "on".to_owned()),
        ]
    };
    let fields = form(SECRET, "3");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = b.post(&path, &refs).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let stored = || {
        let pool = app.pool.clone();
        let project = project.clone();
        async move {
            sqlx::query_scalar::<_, Value>("SELECT settings FROM projects WHERE id = $1")
                .bind(&project)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let settings = stored().await;
    let hooks = &settings["webhooks"];
    assert_eq!(hooks["enabled"], true);
    assert_eq!(hooks["url"], "https://backend.example.com/hooks");
    assert_eq!(hooks["events"], json!(["member_added", "member_removed"]));
    assert_eq!(hooks["grace"], "3s");
    let sealed = hooks["secret"].as_str().unwrap().to_owned();
    assert!(sealed.starts_with("sealed:v1:") && !sealed.contains(SECRET));
    let page = b.get(&path).await;
    assert!(!page.body.contains(SECRET), "the secret is shown again");
    assert!(page.body.contains("A secret is stored"));
    assert!(
        page.body.contains("is not running right now") || page.body.contains("Waiting to be sent")
    );

    // Saved again with the secret field blank: the stored secret stays.
    let fields = form("", "3");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post(&path, &refs).await;
    let settings = stored().await;
    assert_eq!(
        settings["webhooks"]["secret"],
        sealed.as_str(),
        "kept as it was"
    );

    // A mistake with a new secret typed: the page names the field, and neither the page nor
    // the flash kept for it holds the secret.
    let fields = form("whsec-typed-but-refused-42", "an hour");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = b.post(&path, &refs).await;
    assert_eq!(page.status, 303);
    assert!(page
        .location
        .unwrap_or_default()
        .ends_with("#f-webhooks_grace"));
    let flashes: Vec<String> = sqlx::query_scalar("SELECT f::text FROM session_flashes f")
        .fetch_all(&app.pool)
        .await
        .unwrap_or_default();
    assert!(!flashes.join("\n").contains("whsec-typed-but-refused-42"));
    let page = b.get(&path).await;
    assert!(!page.body.contains("whsec-typed-but-refused-42"));
    assert!(text_of(&page.body, "settings-error").is_some_and(|t| t.contains("grace")));

    // Turned on without any secret: the data plane's rule, in the form's words.
    let (mut b2, other, csrf2) = owner(&app, "127.0.0.20", "hooks2@example.com").await;
    let path2 = format!("/projects/{other}/settings");
    let page = b2
        .post(
            &path2,
            &[
                ("csrf", &csrf2),
                ("name", "Shop"),
                ("webhooks_enabled", "on"),
                ("webhooks_url", "https://backend.example.com/hooks"),
                ("wh_member_added", "on"),
            ],
        )
        .await;
    assert!(page
        .location
        .unwrap_or_default()
        .ends_with("#f-webhooks_secret"));
}
