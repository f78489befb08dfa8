//! `rotor_project_consumer` driven by the real `terraform` CLI against a real control plane:
//! add two consumers to a project (a PostgreSQL outbox and a Redis stream), change one in place,
//! import one, remove one (the other stays), and refuse an unknown kind at plan time. Every plan
//! after an apply is clean; the DSN is stored sealed.

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::ControlPlane;
use rotor_e2e::terraform::{output, Terraform, HEADER};
use serde_json::{json, Value};

const DSN: &str = "postgresql://app:tf-secret-pw@db.example.com:5432/app";

/// A project with an outbox consumer (`partitions` of them) and, when `stream`, a Redis
/// stream consumer too.
fn main_tf(partitions: u32, stream: bool) -> String {
    let stream = if stream {
        r#"
resource "rotor_project_consumer" "events" {
  project_id = rotor_project.app.id
  name       = "events"
  type       = "redis_stream"
  enabled    = false
  config = jsonencode({
    address        = ["redis://redis.example.com:6379"]
    streams        = ["rotor-commands"]
    consumer_group = "rotor"
  })
}
"#
    } else {
        ""
    };
    format!(
        r#"{HEADER}
resource "rotor_project" "app" {{
  name = "Consumers App"
}}

resource "rotor_project_consumer" "orders" {{
  project_id = rotor_project.app.id
  name       = "orders"
  type       = "postgresql"
  config = jsonencode({{
    dsn                            = "{DSN}"
    outbox_table_name              = "centrifugo_outbox"
    num_partitions                 = {partitions}
    partition_notification_channel = "centrifugo_partition_change"
  }})
}}
{stream}
output "project_id" {{
  value = rotor_project.app.id
}}
"#
    )
}

async fn consumers(cp: &ControlPlane, token: &str, id: &str) -> Result<Value> {
    Ok(cp.project_settings(token, id).await?["consumers"].clone())
}

#[tokio::test]
async fn terraform_adds_changes_imports_and_removes_a_projects_consumers() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let token = cp.account("consumers-terraform@example.com").await?;
    let tf = Terraform::new(&cp.base, &token)?;

    let dir = tf.workdir("main", &main_tf(1, true))?;
    tf.apply(&dir).await?;
    let outputs = tf.outputs(&dir).await?;
    let id = output(&outputs, "project_id")?.to_owned();
    let list = consumers(&cp, &token, &id).await?;
    let names: Vec<&str> = list
        .as_array()
        .context("consumers")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{list}");
    let orders = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "orders"))
        .context("orders")?;
    assert_eq!(orders["type"], "postgresql");
    assert_eq!(orders["enabled"], true);
    assert_eq!(orders["postgresql"]["dsn"], DSN, "shown to its owner");
    assert_eq!(orders["postgresql"]["num_partitions"], 1);
    let stored: Value = sqlx::query_scalar("SELECT settings FROM projects WHERE id = $1")
        .bind(&id)
        .fetch_one(cp.db.pool())
        .await?;
    assert!(
        !stored.to_string().contains("tf-secret-pw"),
        "the DSN is stored sealed: {stored}"
    );
    tf.assert_clean(&dir, "the first apply").await?;

    // Change one in place; the other is untouched.
    std::fs::write(dir.join("main.tf"), main_tf(2, true))?;
    let plan = tf.plan(&dir).await?;
    ensure!(
        plan.code == 2
            && plan.stdout.contains("update in-place")
            && !plan.stdout.contains("must be replaced"),
        "{}",
        plan.text()
    );
    tf.apply(&dir).await?;
    let list = consumers(&cp, &token, &id).await?;
    let by_name = |n: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == n))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_name("orders")["postgresql"]["num_partitions"], 2);
    assert_eq!(by_name("events")["enabled"], false);
    assert_eq!(
        by_name("events")["redis_stream"]["streams"],
        json!(["rotor-commands"])
    );
    tf.assert_clean(&dir, "the change").await?;

    // Import into a fresh configuration: the plan is clean.
    let imported = tf.workdir(
        "imported",
        &format!(
            r#"{HEADER}
resource "rotor_project_consumer" "orders" {{
  project_id = "{id}"
  name       = "orders"
  type       = "postgresql"
  config = jsonencode({{
    dsn                            = "{DSN}"
    outbox_table_name              = "centrifugo_outbox"
    num_partitions                 = 2
    partition_notification_channel = "centrifugo_partition_change"
  }})
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
            "rotor_project_consumer.orders",
            &format!("{id}/orders"),
        ],
    )
    .await?;
    tf.assert_clean(&imported, "the import").await?;

    // Remove one: the other stays.
    std::fs::write(dir.join("main.tf"), main_tf(2, false))?;
    tf.apply(&dir).await?;
    let list = consumers(&cp, &token, &id).await?;
    let names: Vec<&str> = list
        .as_array()
        .context("consumers")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["orders"], "{list}");
    tf.assert_clean(&dir, "the removal").await?;
    Ok(())
}

#[tokio::test]
async fn an_unknown_kind_or_a_config_that_is_not_an_object_is_refused_at_plan_time() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let token = cp.account("consumers-bad@example.com").await?;
    let tf = Terraform::new(&cp.base, &token)?;
    let dir = tf.workdir(
        "bad",
        &format!(
            r#"{HEADER}
resource "rotor_project_consumer" "bad" {{
  project_id = "prj_x"
  name       = "queue"
  type       = "kafka"
  config     = jsonencode(["not", "an", "object"])
}}
"#
        ),
    )?;
    let plan = tf.run(&dir, &["plan", "-input=false", "-no-color"]).await?;
    assert_eq!(plan.code, 1, "{}", plan.text());
    assert!(
        plan.stderr.contains("Invalid value for type")
            && plan.stderr.contains("unknown kind \"kafka\"")
            && plan.stderr.contains("Invalid value for config"),
        "{}",
        plan.text()
    );
    Ok(())
}
