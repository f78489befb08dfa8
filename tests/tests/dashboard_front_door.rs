//! The front door over a real control plane, in Debian's Chromium
//! (tests/clients/node/dashboard_front_door.mjs, screenshots at 1280 and 390 px under
//! target/screenshots/front-door): the product page and the rendered API reference, the current
//! project tab visible at 390 px, every aria-labelledby naming an element, a namespace deleted
//! and a token revoked through their confirmation pages, and a forgotten password reset through
//! a test mailbox the control plane reaches over real SMTP.

use std::time::Duration;

use anyhow::{Context, Result};
use rotor_e2e::control_plane::ControlPlane;
use rotor_e2e::{ClientScript, SmtpSink};
use serde_json::{json, Value};

#[tokio::test]
async fn a_visitor_reads_the_front_page_and_api_reference_signs_up_and_resets_a_forgotten_password(
) -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let shots = root.join("screenshots/front-door");
    let _ = std::fs::remove_dir_all(&shots);
    let mailbox_dir =
        std::env::temp_dir().join(format!("rotor-mailbox-{}", uuid::Uuid::new_v4().simple()));
    let sink = SmtpSink::start_in(Some(mailbox_dir.clone())).await?;
    let smtp_url = sink.url();
    let cp = ControlPlane::start_with_env(&[
        ("ROTOR_SMTP_URL", smtp_url.as_str()),
        ("ROTOR_MAIL_FROM", "Rotor <no-reply@rotor.test>"),
    ])
    .await?;
    let out = ClientScript::node("dashboard_front_door.mjs")
        .envs([
            ("ROTOR_BASE_URL", cp.base.as_str()),
            ("ROTOR_SCREENSHOTS", shots.to_str().context("path")?),
            ("ROTOR_MAILBOX", mailbox_dir.to_str().context("path")?),
        ])
        .timeout(Duration::from_secs(150))
        .run()
        .await?
        .ensure_success()?;
    let o: Value = out.stdout_json()?;
    let _ = std::fs::remove_dir_all(&mailbox_dir);

    // 1. The product page and the API reference, at both widths.
    assert_eq!(o["front_status"], 200, "{o}");
    assert_eq!(
        o["front_url"],
        format!("{}/", cp.base),
        "visitors stay on /"
    );
    assert_eq!(o["front_title"], "Real-time messaging for your app, hosted");
    assert_eq!(o["front_signup_href"], "/signup");
    assert_eq!(
        o["front_snippets"],
        json!(["snippet-js", "snippet-node", "snippet-curl"])
    );
    let js = o["front_js_snippet"].as_str().unwrap_or_default();
    assert!(
        js.contains("/t/your-project/connection/websocket")
            && js.contains("newSubscription('updates:lobby')"),
        "{js}"
    );
    assert!(o["front_curl_snippet"]
        .as_str()
        .unwrap_or_default()
        .contains("/t/your-project/api/publish"));
    for wide in [
        "front_overflow_1280",
        "front_overflow_390",
        "api_overflow_390",
        "api_overflow_1280",
        "page_overflow_390",
    ] {
        assert!(o[wide].as_i64().unwrap_or(1) <= 0, "{wide}: {o}");
    }
    assert_eq!(o["front_signup_visible_390"], true);
    assert_eq!(o["api_title"], "REST API reference");
    assert!(o["api_operations"].as_u64() >= Some(20), "{o}");
    assert_eq!(
        o["api_operations"], o["api_json_operations"],
        "the page lists what the JSON document lists"
    );
    assert_eq!(o["api_json_href"], "/v1/openapi.json");
    assert_eq!(
        o["api_groups"],
        json!([
            "Accounts and tokens",
            "Projects",
            "Keys and secrets",
            "Namespaces",
            "Activity",
            "Schemas"
        ])
    );

    // 2. The current tab is inside the viewport at 390 px, though the bar scrolls.
    assert_eq!(
        o["tab_bar_scrolls_390"], true,
        "seven tabs do not fit 390 px"
    );
    let tabs = o["tab_inside_390"].as_object().context("tabs")?;
    assert_eq!(tabs.len(), 7);
    for (tab, inside) in tabs {
        assert_eq!(
            inside,
            &json!(true),
            "the {tab} tab is off screen at 390 px"
        );
    }

    // 3. Confirmation pages instead of dialogs; reloads change nothing.
    assert_eq!(o["dialogs"], json!([]), "no JavaScript dialog");
    assert!(o["ns_confirm_url"]
        .as_str()
        .unwrap_or_default()
        .ends_with("/namespaces/updates/delete"));
    assert_eq!(o["ns_confirm_title"], "Delete the namespace “updates”?");
    assert_eq!(o["ns_rows_before_delete"], 2);
    assert!(o["ns_deleted_notice"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Namespace “updates” deleted"));
    assert_eq!(o["ns_rows_after_delete"], json!(["chat"]));
    assert_eq!(o["ns_rows_after_reload"], json!(["chat"]));
    assert_eq!(o["ns_notice_after_reload"], 0);
    assert_eq!(o["ns_confirm_after_delete"], 404);
    assert_eq!(
        o["token_confirm_title"],
        "Revoke the management token “ci”?"
    );
    assert!(o["token_revoked_notice"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Token revoked"));
    assert_eq!(o["tokens_after_revoke"], 0);
    assert_eq!(o["tokens_after_reload"], 0);
    assert_eq!(o["token_notice_after_reload"], 0);

    // 4. Forgot password, through the mailbox.
    assert!(o["reset_sent_text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("If an account exists"));
    assert_eq!(o["reset_mail_subject"], "Reset your Rotor password");
    assert_eq!(o["reset_link_base"], cp.base, "links use the public URL");
    assert_eq!(
        o["reset_mails_after_reload"], 1,
        "a reload sends nothing more"
    );
    let email = o["reset_form_email"].as_str().unwrap_or_default();
    assert!(email.starts_with("newcomer-"), "{o}");
    assert!(o["reset_done_notice"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Your password was changed"));
    assert_eq!(
        o["reset_done_url_after_reload"],
        format!("{}/login?reset=done", cp.base)
    );
    assert_eq!(o["used_link_status"], 410, "a link works once");
    assert_eq!(o["used_link_title"], "This link does not work any more");
    assert!(
        o["other_device_url"]
            .as_str()
            .unwrap_or_default()
            .contains("/login"),
        "the other device was logged out: {o}"
    );
    assert_eq!(o["signed_in_with_new_password"], true);
    assert_eq!(o["account_audit_mentions_reset"], true);
    // The mailbox got exactly that one message, over SMTP.
    let mail = sink.next(Duration::from_secs(5)).await?;
    assert_eq!(mail.to, [email]);
    assert_eq!(mail.from, "no-reply@rotor.test");
    assert!(!sink.anything_within(Duration::from_millis(300)).await);

    // 5. Accessibility and hygiene.
    assert!(o["pages_checked"].as_u64() >= Some(15), "{o}");
    assert_eq!(o["dangling_labels"], json!({}), "aria-labelledby targets");
    assert_eq!(o["console_errors"], json!([]), "no script or CSP errors");
    let files: Vec<String> = std::fs::read_dir(&shots)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for name in [
        "front-1280",
        "front-390",
        "api-reference-1280",
        "api-reference-390",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(&format!("-{name}.png"))),
            "{name} screenshot in {files:?}"
        );
    }
    Ok(())
}
