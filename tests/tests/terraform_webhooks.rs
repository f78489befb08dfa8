//! `rotor_project_webhooks` driven by the real `terraform` CLI against a real control plane:
//! set a project's webhooks, change them in place next to another setting of the project,
//! notice and repair a secret changed elsewhere, import them, destroy them (webhooks off), and
//! refuse bad values at plan time on the attribute that is wrong. Every plan after an apply is
//! clean (`-detailed-exitcode` 0).

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::ControlPlane;
use rotor_e2e::terraform::{output, Terraform, HEADER};
use serde_json::{json, Value};

const SECRET: &str = "whsec-terraform-0123456789";

/// A project with webhooks; `second` is the changed configuration (another URL and secret,
/// every event, a timeout, sending paused, and the project's user status on).
fn main_tf(second: bool) -> String {
    let (user_status, hooks) = if second {
        (
            "\n  user_status_enabled = true",
            r#"  url        = "https://hooks.example.com/v2/rotor"
  secret     = "whsec-terraform-rotated-42"
  enabled    = false
  timeout    = "2s""#,
        )
    } else {
        (
            "",
            r#"  url        = "https://hooks.example.com/rotor"
  secret     = "whsec-terraform-0123456789"
  events     = ["member_added", "member_removed"]
  grace      = "3s""#,
        )
    };
    format!(
        r#"{HEADER}
resource "rotor_project" "app" {{
  name = "Hooks App"{user_status}
}}

resource "rotor_project_webhooks" "hooks" {{
  project_id = rotor_project.app.id
{hooks}
}}

output "project_id" {{
  value = rotor_project.app.id
}}

output "webhooks_id" {{
  value = rotor_project_webhooks.hooks.id
}}
"#
    )
}

#[tokio::test]
async fn terraform_sets_changes_repairs_imports_and_removes_a_projects_webhooks() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let token = cp.account("hooks-terraform@example.com").await?;
    let tf = Terraform::new(&cp.base, &token)?;

    // Create: the setting is what the configuration says, the secret stored sealed.
    let dir = tf.workdir("main", &main_tf(false))?;
    tf.apply(&dir).await?;
    let outputs = tf.outputs(&dir).await?;
    let id = output(&outputs, "project_id")?.to_owned();
    assert_eq!(outputs["webhooks_id"]["value"], id.as_str());
    assert_eq!(
        cp.project_settings(&token, &id).await?["webhooks"],
        json!({"enabled": true, "url": "https://hooks.example.com/rotor", "secret": SECRET,
            "events": ["member_added", "member_removed"], "grace": "3s"})
    );
    let stored: Value = sqlx::query_scalar("SELECT settings FROM projects WHERE id = $1")
        .bind(&id)
        .fetch_one(cp.db.pool())
        .await?;
    let sealed = stored["webhooks"]["secret"].as_str().context("secret")?;
    assert!(sealed.starts_with("sealed:v1:") && !sealed.contains(SECRET));
    cp.wait_applied(&token, &id).await?;
    tf.assert_clean(&dir, "the first apply").await?;

    // Change in place, together with another setting of the project: neither edit is lost.
    std::fs::write(dir.join("main.tf"), main_tf(true))?;
    let plan = tf.plan(&dir).await?;
    ensure!(plan.code == 2, "changes expected: {}", plan.text());
    ensure!(
        plan.stdout.contains("update in-place") && !plan.stdout.contains("must be replaced"),
        "{}",
        plan.text()
    );
    tf.apply(&dir).await?;
    let now = cp.project_settings(&token, &id).await?;
    assert_eq!(
        now["webhooks"],
        json!({"enabled": false, "url": "https://hooks.example.com/v2/rotor",
            "secret": "whsec-terraform-rotated-42", "timeout": "2s"})
    );
    assert_eq!(now["user_status"], json!({"enabled": true}), "{now}");
    tf.assert_clean(&dir, "the update").await?;

    // The secret changed elsewhere (the dashboard, a script): the plan shows it and the next
    // apply puts the configured one back.
    let mut drifted = now.clone();
    drifted["webhooks"]["secret"] = json!("whsec-changed-by-hand-000");
    let (status, body) = cp
        .patch_project(&token, &id, json!({"settings": drifted}))
        .await?;
    ensure!(status == 200, "{status} {body}");
    let plan = tf.plan(&dir).await?;
    ensure!(plan.code == 2, "the drift is not seen: {}", plan.text());
    ensure!(
        plan.stdout.contains("secret") && !plan.stdout.contains("whsec-changed-by-hand"),
        "the sensitive secret is named, never shown: {}",
        plan.text()
    );
    tf.apply(&dir).await?;
    assert_eq!(
        cp.project_settings(&token, &id).await?["webhooks"]["secret"],
        "whsec-terraform-rotated-42"
    );
    tf.assert_clean(&dir, "repairing drift").await?;

    // Import by project id into a fresh configuration: the plan is clean.
    let imported = tf.workdir(
        "imported",
        &format!(
            r#"{HEADER}
resource "rotor_project_webhooks" "existing" {{
  project_id = "{id}"
  url        = "https://hooks.example.com/v2/rotor"
  secret     = "whsec-terraform-rotated-42"
  enabled    = false
  timeout    = "2s"
}}
"#
        ),
    )?;
    tf.ok(
        &imported,
        &[
            "import",
            "-input=false",
            "-no-color",
            "rotor_project_webhooks.existing",
            id.as_str(),
        ],
    )
    .await?;
    tf.assert_clean(&imported, "importing").await?;
    // Forget it there, so destroying the main configuration is the only removal.
    tf.ok(
        &imported,
        &[
            "state",
            "rm",
            "-no-color",
            "rotor_project_webhooks.existing",
        ],
    )
    .await?;

    // Removed from the configuration: the setting goes (webhooks off), the project stays.
    let only_project = main_tf(true);
    let cut = only_project
        .find("resource \"rotor_project_webhooks\"")
        .context("resource")?;
    std::fs::write(
        dir.join("main.tf"),
        format!(
            "{}output \"project_id\" {{\n  value = rotor_project.app.id\n}}\n",
            &only_project[..cut]
        ),
    )?;
    tf.apply(&dir).await?;
    let now = cp.project_settings(&token, &id).await?;
    assert!(now.get("webhooks").is_none(), "{now}");
    assert_eq!(now["user_status"], json!({"enabled": true}), "{now}");
    tf.assert_clean(&dir, "removing the webhooks").await?;

    // An import of a project without webhooks says so.
    let run = tf
        .run(
            &imported,
            &[
                "import",
                "-input=false",
                "-no-color",
                "rotor_project_webhooks.existing",
                id.as_str(),
            ],
        )
        .await?;
    ensure!(
        run.code == 1 && run.stderr.contains("has no webhooks set"),
        "{}",
        run.text()
    );
    tf.destroy(&dir).await?;
    Ok(())
}

#[tokio::test]
async fn bad_webhook_values_are_refused_at_plan_time_with_the_attribute_path() -> Result<()> {
    // Validation runs before the provider talks to any server.
    let tf = Terraform::new("http://127.0.0.1:9", "unused")?;
    let dir = tf.workdir(
        "invalid",
        &format!(
            r#"{HEADER}
resource "rotor_project_webhooks" "bad" {{
  project_id = "prj_x"
  url        = "ftp://hooks.example.com"
  secret     = "short"
  events     = ["member_added", "member_joined"]
  grace      = "10m"
  timeout    = "30s"
}}
"#
        ),
    )?;
    let run = tf.run(&dir, &["plan", "-input=false", "-no-color"]).await?;
    assert_eq!(run.code, 1, "{}", run.text());
    for expected in [
        // Each error quotes its line, which Terraform finds by the attribute path.
        "url        = \"ftp://hooks.example.com\"",
        "must start with https:// or http://",
        "must be 16 to 1024 bytes",
        "unknown event \"member_joined\"",
        "grace      = \"10m\"",
        "grace must be between 0ns and 300s",
        "timeout    = \"30s\"",
        "timeout must be between 100ms and 10s",
    ] {
        assert!(
            run.stderr.contains(expected),
            "{expected:?} missing: {}",
            run.text()
        );
    }
    Ok(())
}
