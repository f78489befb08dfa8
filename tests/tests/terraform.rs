//! The Terraform provider (`terraform-provider-rotor`) driven by the real `terraform` CLI
//! against a real control plane: create a project with namespaces and a key, change options in
//! place, notice and repair drift, import, destroy, and refuse bad values at plan time with the
//! attribute that is wrong. Every plan after an apply must be clean (`-detailed-exitcode` 0).
//!
//! `terraform` comes from `TERRAFORM_BIN` or `PATH` (`scripts/install-test-deps.sh` installs
//! it); the provider is found next to the other workspace binaries and wired in through a CLI
//! config with `dev_overrides`, so no registry and no `terraform init` are involved.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::{ControlPlane, Project};
use rotor_e2e::terraform::{output, Terraform, HEADER};
use serde_json::{json, Value};

/// The configuration under test; `history_size`, `feed_open` and `user_status` (which also
/// switches the gRPC API on) are what the second apply changes, together with the project's
/// name.
fn main_tf(project_name: &str, history_size: u32, feed_open: bool, user_status: bool) -> String {
    let feed_option = if feed_open {
        "\n  allow_subscribe_for_client = true"
    } else {
        ""
    };
    let user_status = if user_status {
        "\n  user_status_enabled = true\n  grpc_api_enabled    = true"
    } else {
        ""
    };
    format!(
        r#"{HEADER}
resource "rotor_project" "app" {{
  name = "{project_name}"{user_status}
}}

resource "rotor_namespace" "chat" {{
  project_id          = rotor_project.app.id
  name                = "chat"
  presence            = true
  join_leave          = true
  history_size        = {history_size}
  history_ttl         = "300s"
  force_recovery      = true
  force_recovery_mode = "cache"
  auto_cache_recover  = true
}}

resource "rotor_namespace" "feed" {{
  project_id = rotor_project.app.id
  name       = "feed"{feed_option}
}}

resource "rotor_api_key" "backend" {{
  project_id = rotor_project.app.id
  name       = "backend"
}}

resource "rotor_api_key" "publisher" {{
  project_id = rotor_project.app.id
  name       = "publisher"
  scope      = "publish"
}}

data "rotor_project" "by_slug" {{
  slug = rotor_project.app.slug
}}

output "project_id" {{
  value = rotor_project.app.id
}}

output "websocket" {{
  value = rotor_project.app.endpoints.websocket
}}

output "looked_up_name" {{
  value = data.rotor_project.by_slug.name
}}

output "api_key" {{
  value     = rotor_api_key.backend.key
  sensitive = true
}}

output "publisher_key" {{
  value     = rotor_api_key.publisher.key
  sensitive = true
}}

output "token_hmac_secret" {{
  value     = rotor_project.app.token_hmac_secret
  sensitive = true
}}
"#
    )
}

async fn get(cp: &ControlPlane, token: &str, path: &str) -> Result<(u16, Value)> {
    cp.call("GET", path, Some(token), None).await
}

async fn namespace(cp: &ControlPlane, token: &str, project: &str, name: &str) -> Result<Value> {
    let (status, body) = get(
        cp,
        token,
        &format!("/v1/projects/{project}/namespaces/{name}"),
    )
    .await?;
    ensure!(status == 200, "namespace {name}: {status} {body}");
    Ok(body)
}

async fn key_ids(cp: &ControlPlane, token: &str, project: &str) -> Result<Vec<String>> {
    let (status, body) = get(cp, token, &format!("/v1/projects/{project}/api-keys")).await?;
    ensure!(status == 200, "keys: {status} {body}");
    Ok(body["api_keys"]
        .as_array()
        .context("api_keys")?
        .iter()
        .filter(|k| k["name"] == "backend")
        .filter_map(|k| k["id"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn terraform_creates_updates_repairs_imports_and_destroys_a_project() -> Result<()> {
    let started = Instant::now();
    let cp = ControlPlane::start().await?;
    let token = cp.account("terraform@example.com").await?;
    let tf = Terraform::new(&cp.base, &token)?;

    // Create.
    let dir = tf.workdir("main", &main_tf("Terraform App", 10, true, false))?;
    tf.apply(&dir).await?;
    let outputs = tf.outputs(&dir).await?;
    let id = output(&outputs, "project_id")?.to_owned();
    let (status, project) = cp.get_project(&token, &id).await?;
    assert_eq!(status, 200, "{project}");
    assert_eq!(project["name"], "Terraform App");
    assert_eq!(project["engine"], "memory");
    let slug = project["slug"].as_str().context("slug")?.to_owned();
    assert_eq!(output(&outputs, "websocket")?, cp.ws_url(&slug));
    assert_eq!(project["endpoints"]["websocket"], cp.ws_url(&slug).as_str());
    assert_eq!(output(&outputs, "looked_up_name")?, "Terraform App");
    let (_, secrets) = cp.secrets(&token, &id).await?;
    assert_eq!(
        output(&outputs, "token_hmac_secret")?,
        secrets["token_hmac_secret"].as_str().context("secret")?
    );
    let chat = namespace(&cp, &token, &id, "chat").await?;
    for (option, value) in [
        ("presence", json!(true)),
        ("join_leave", json!(true)),
        ("history_size", json!(10)),
        ("history_ttl", json!("5m0s")),
        ("force_recovery", json!(true)),
        ("force_recovery_mode", json!("cache")),
        ("auto_cache_recover", json!(true)),
    ] {
        assert_eq!(chat[option], value, "chat.{option} in {chat}");
    }
    assert!(chat.get("allow_subscribe_for_client").is_none(), "{chat}");
    let feed = namespace(&cp, &token, &id, "feed").await?;
    assert_eq!(feed["allow_subscribe_for_client"], true, "{feed}");
    assert!(feed.get("presence").is_none(), "defaults stay off: {feed}");
    let keys = key_ids(&cp, &token, &id).await?;
    assert_eq!(keys.len(), 1, "{keys:?}");

    // The key in the state is the real key: the edge accepts it once the tenant runs.
    cp.wait_applied(&token, &id).await?;
    let project_ref = Project {
        id: id.clone(),
        slug: slug.clone(),
        key: output(&outputs, "api_key")?.to_owned(),
        secret: String::new(),
    };
    let (status, body) = cp
        .publish(&project_ref, "chat:terraform", json!({"n": 1}))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("error").is_none(), "{body}");
    // The publish-only key publishes and may call nothing else.
    let (_, listed) = get(&cp, &token, &format!("/v1/projects/{id}/api-keys")).await?;
    let scopes: Vec<(String, String)> = listed["api_keys"]
        .as_array()
        .context("api_keys")?
        .iter()
        .map(|k| (k["name"].to_string(), k["scope"].to_string()))
        .collect();
    assert!(
        scopes.contains(&("\"publisher\"".into(), "\"publish\"".into()))
            && scopes.contains(&("\"backend\"".into(), "\"all\"".into())),
        "{scopes:?}"
    );
    let publisher = Project {
        id: id.clone(),
        slug: slug.clone(),
        key: output(&outputs, "publisher_key")?.to_owned(),
        secret: String::new(),
    };
    let (status, body) = cp
        .publish(&publisher, "chat:terraform", json!({"n": 2}))
        .await?;
    assert!(
        status == 200 && body.get("error").is_none(),
        "{status} {body}"
    );
    let history = cp
        .http
        .post(format!("{}/history", cp.api_url(&slug)))
        .header("X-API-Key", &publisher.key)
        .body(json!({"channel": "chat:terraform"}).to_string())
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(history["error"]["code"], 103, "{history}");
    tf.assert_clean(&dir, "the first apply").await?;

    // The API refuses what the project's plan does not allow; the error names the attribute.
    std::fs::write(
        dir.join("main.tf"),
        main_tf("Terraform App", 500, true, false),
    )?;
    let refused = tf
        .run(
            &dir,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        )
        .await?;
    assert_eq!(refused.code, 1, "{}", refused.text());
    assert!(
        refused.stderr.contains("history_size        = 500")
            && refused.stderr.contains("your plan allows at most 100"),
        "{}",
        refused.text()
    );

    // User status is off unless asked for.
    assert!(
        project
            .get("settings")
            .and_then(|s| s.get("user_status"))
            .is_none(),
        "{project}"
    );

    // Update in place: rename the project, change an option, drop another (back to default),
    // turn user status on.
    std::fs::write(
        dir.join("main.tf"),
        main_tf("Terraform App 2", 20, false, true),
    )?;
    let plan = tf.plan(&dir).await?;
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout.contains("0 to add, 3 to change, 0 to destroy"),
        "in place, nothing replaced: {}",
        plan.text()
    );
    tf.apply(&dir).await?;
    let (_, project) = cp.get_project(&token, &id).await?;
    assert_eq!(project["name"], "Terraform App 2");
    assert_eq!(project["slug"], slug.as_str(), "a rename keeps the slug");
    assert_eq!(
        project["settings"]["user_status"],
        json!({"enabled": true}),
        "{project}"
    );
    assert_eq!(
        project["settings"]["grpc_api"],
        json!({"enabled": true}),
        "{project}"
    );
    cp.wait_applied(&token, &id).await?;
    let status = cp
        .http
        .post(format!("{}/user_status", cp.api_url(&slug)))
        .header("X-API-Key", &project_ref.key)
        .body(json!({"users": ["nobody"]}).to_string())
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(status["result"]["statuses"][0]["online"], false, "{status}");
    assert_eq!(
        namespace(&cp, &token, &id, "chat").await?["history_size"],
        20
    );
    let feed = namespace(&cp, &token, &id, "feed").await?;
    assert!(
        feed.get("allow_subscribe_for_client").is_none(),
        "an option removed from the config is back at its default: {feed}"
    );
    tf.assert_clean(&dir, "the update").await?;

    // Drift: a namespace deleted and the key revoked outside Terraform are planned again.
    let (status, _) = cp
        .call(
            "DELETE",
            &format!("/v1/projects/{id}/namespaces/feed"),
            Some(&token),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (status, _) = cp
        .call(
            "DELETE",
            &format!("/v1/projects/{id}/api-keys/{}", keys[0]),
            Some(&token),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let plan = tf.plan(&dir).await?;
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout.contains("rotor_namespace.feed will be created")
            && plan
                .stdout
                .contains("rotor_api_key.backend will be created"),
        "{}",
        plan.text()
    );
    tf.apply(&dir).await?;
    namespace(&cp, &token, &id, "feed").await?;
    let new_keys = key_ids(&cp, &token, &id).await?;
    assert_eq!(new_keys.len(), 1);
    assert_ne!(new_keys[0], keys[0], "a new key replaces the revoked one");
    tf.assert_clean(&dir, "repairing drift").await?;

    // Import the project and a namespace into a fresh configuration: the plan is clean.
    let imported = tf.workdir(
        "imported",
        &format!(
            r#"{HEADER}
resource "rotor_project" "existing" {{
  name                = "Terraform App 2"
  user_status_enabled = true
  grpc_api_enabled    = true
}}

resource "rotor_namespace" "feed" {{
  project_id = rotor_project.existing.id
  name       = "feed"
}}
"#
        ),
    )?;
    let import_args = ["import", "-input=false", "-no-color"];
    tf.ok(
        &imported,
        &[&import_args[..], &["rotor_project.existing", id.as_str()]].concat(),
    )
    .await?;
    let namespace_id = format!("{id}/feed");
    tf.ok(
        &imported,
        &[
            &import_args[..],
            &["rotor_namespace.feed", namespace_id.as_str()],
        ]
        .concat(),
    )
    .await?;
    tf.assert_clean(&imported, "importing").await?;

    // Destroy: nothing is left.
    tf.destroy(&dir).await?;
    let (status, _) = cp.get_project(&token, &id).await?;
    assert_eq!(status, 404, "the project is gone");
    let (_, list) = get(&cp, &token, "/v1/projects").await?;
    assert_eq!(list["projects"], json!([]), "{list}");
    eprintln!("terraform lifecycle took {:.1?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn bad_values_are_refused_at_plan_time_with_the_attribute_path() -> Result<()> {
    // Validation runs before the provider talks to any server.
    let tf = Terraform::new("http://127.0.0.1:9", "unused")?;
    let dir = tf.workdir(
        "invalid",
        &format!(
            r#"{HEADER}
resource "rotor_project" "app" {{
  name = "Valid"
}}

resource "rotor_namespace" "bad" {{
  project_id   = rotor_project.app.id
  name         = "no spaces allowed"
  history_size = -1
}}

resource "rotor_namespace" "half" {{
  project_id   = rotor_project.app.id
  name         = "half"
  history_size = 10
}}

resource "rotor_api_key" "reader" {{
  project_id = rotor_project.app.id
  name       = "reader"
  scope      = "read"
}}
"#
        ),
    )?;
    let run = tf.run(&dir, &["plan", "-input=false", "-no-color"]).await?;
    assert_eq!(run.code, 1, "{}", run.text());
    for expected in [
        // Each error quotes the offending line, which Terraform finds by the attribute path.
        "name         = \"no spaces allowed\"",
        "must match ^[-a-zA-Z0-9_]{2,}$",
        "history_size = -1",
        "must not be negative",
        // A rule across options (the data plane's), reported on the namespace.
        "rotor_namespace.half",
        "history_size and history_ttl must be set together",
        "scope      = \"read\"",
        "scope must be \"all\" or \"publish\"",
    ] {
        assert!(
            run.stderr.contains(expected),
            "{expected:?} missing: {}",
            run.text()
        );
    }

    let dir = tf.workdir(
        "engine",
        &format!(
            r#"{HEADER}
resource "rotor_project" "app" {{
  name   = "Valid"
  engine = "postgres"
}}
"#
        ),
    )?;
    let run = tf.run(&dir, &["plan", "-input=false", "-no-color"]).await?;
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stderr.contains("engine = \"postgres\"")
            && run.stderr.contains("unknown engine \"postgres\""),
        "{}",
        run.text()
    );
    Ok(())
}

#[tokio::test]
async fn the_basic_example_applies_cleanly_and_destroys() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let token = cp.account("example@example.com").await?;
    let tf = Terraform::new(&cp.base, &token)?;
    let example = rotor_e2e::paths::workspace_root().join("terraform/examples/basic/main.tf");
    let dir = tf.workdir("example", &std::fs::read_to_string(&example)?)?;
    tf.apply(&dir).await?;
    let outputs = tf.outputs(&dir).await?;
    let (_, list) = get(&cp, &token, "/v1/projects").await?;
    let project = &list["projects"][0];
    let id = project["id"].as_str().context("project id")?;
    let slug = project["slug"].as_str().context("slug")?;
    assert_eq!(output(&outputs, "websocket_endpoint")?, cp.ws_url(slug));
    assert_eq!(output(&outputs, "api_endpoint")?, cp.api_url(slug));
    let (_, namespaces) = get(&cp, &token, &format!("/v1/projects/{id}/namespaces")).await?;
    let names: Vec<&str> = namespaces["namespaces"]
        .as_array()
        .context("namespaces")?
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["chat", "news"]);
    tf.assert_clean(&dir, "applying the example").await?;
    tf.destroy(&dir).await?;
    let (_, list) = get(&cp, &token, "/v1/projects").await?;
    assert_eq!(list["projects"], json!([]), "{list}");
    Ok(())
}
