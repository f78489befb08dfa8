//! Secrets at rest: token secrets and proxy headers are sealed in Postgres, open only for
//! their own project, are erased when their grace ends, are sealed when left in plaintext by
//! an older version, and a server without an operator key generates a private one.

mod common;
mod fixtures;

use std::time::Duration;

use common::Api;
use fixtures::*;
use rotor_control_plane::ids::ProjectId;
use rotor_control_plane::sealed::SealError;
use rotor_control_plane::secret_store;
use rotor_control_plane::tenant::{compile, CompileError};
use serde_json::json;

#[tokio::test]
async fn secrets_are_sealed_in_the_database_yet_open_for_the_tenant_and_the_owner() {
    let api = Api::start().await;
    let token = api.account("sealed@example.com").await;
    let p = api.project(&token, "sealed").await;
    let id = pid(&p);
    let s = api.secrets(&token, id.as_str()).await;
    let secret = s["token_hmac_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);

    let (st, b) = api
        .patch_settings(&token, id.as_str(), settings_with_header(SECRET_HEADER))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["settings"]["client_proxy"]["connect"]["http"]["static_headers"]["Authorization"],
        SECRET_HEADER,
        "the owner reads back what they set"
    );
    // Rotate with a grace period so the previous secret is stored too.
    let r = api
        .rotate_secret(&token, id.as_str(), Some(json!({"grace_seconds": 3600})))
        .await;
    let rotated = r["token_hmac_secret"].as_str().unwrap().to_owned();

    // Nothing in the rows an attacker with a database dump would read is a secret.
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT t::text FROM token_secrets t UNION ALL SELECT p::text FROM projects p",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    let dump = dump.join("\n");
    for plain in [
        secret.as_str(),
        rotated.as_str(),
        SECRET_HEADER,
        "backend-credential",
    ] {
        assert!(!dump.contains(plain), "{plain:?} stored in plaintext");
    }
    assert!(dump.contains("sealed:v1:"));

    // The tenant's config has them in plaintext.
    let rotor_control_plane::tenant::Compiled { config, .. } =
        compile(&api.pool, &id, None, None).await.unwrap();
    assert_eq!(config.client.token.hmac_secret_key, rotated);
    assert_eq!(config.client.token.hmac_previous_secret_key, secret);
    assert_eq!(
        config.client.proxy.connect.http.static_headers["Authorization"],
        SECRET_HEADER
    );
    // The owner reads the current secret; GET shows the header.
    let s = api.secrets(&token, id.as_str()).await;
    assert_eq!(s["token_hmac_secret"], rotated.as_str());
    let (_, got) = api.get_project(&token, id.as_str()).await;
    assert_eq!(got["settings"], settings_with_header(SECRET_HEADER));

    // The audit trail says what changed, never the values.
    let audit = audit_text(&api).await;
    for plain in [
        secret.as_str(),
        rotated.as_str(),
        "backend-credential",
        "sealed:v1:",
    ] {
        assert!(
            !audit.contains(plain),
            "{plain:?} in the audit log: {audit}"
        );
    }
    assert!(audit.contains("[redacted]"), "{audit}");
    assert!(audit.contains(r#""hmac_secret": "changed""#), "{audit}");
}

#[tokio::test]
async fn a_sealed_secret_copied_into_another_projects_row_does_not_open() {
    let api = Api::start().await;
    let token = api.account("thief@example.com").await;
    let victim = pid(&api.project(&token, "victim").await);
    let thief = pid(&api.project(&token, "thief").await);
    let (s, _) = api
        .call(
            "PATCH",
            &format!("/v1/projects/{victim}"),
            Some(&token),
            Some(json!({"settings": settings_with_header(SECRET_HEADER)})),
        )
        .await;
    assert_eq!(s, 200);

    // The token secret, row to row.
    sqlx::query(
        "UPDATE token_secrets SET hmac_secret = (SELECT hmac_secret FROM token_secrets WHERE project_id = $1) \
         WHERE project_id = $2",
    )
    .bind(&victim)
    .bind(&thief)
    .execute(&api.pool)
    .await
    .unwrap();
    let e = compile(&api.pool, &thief, None, None).await.unwrap_err();
    assert!(
        matches!(
            &e,
            CompileError::Sealed {
                field: "token_secrets.hmac_secret",
                source: SealError::Mismatch,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains(thief.as_str()) && e.to_string().contains("another row"),
        "{e}"
    );
    let (s, b) = api
        .call(
            "GET",
            &format!("/v1/projects/{thief}/secrets"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (500, Some("internal")),
        "{b}"
    );
    assert!(
        !b.to_string().contains("sealed"),
        "5xx bodies are opaque: {b}"
    );

    // A proxy header, settings to settings.
    sqlx::query(
        "UPDATE projects SET settings = (SELECT settings FROM projects WHERE id = $1) WHERE id = $2",
    )
    .bind(&victim)
    .bind(&thief)
    .execute(&api.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE token_secrets SET hmac_secret = $2 WHERE project_id = $1")
        .bind(&thief)
        .bind(secret_store::seal_token_secret(&thief, "thiefs own secret").unwrap())
        .execute(&api.pool)
        .await
        .unwrap();
    let e = compile(&api.pool, &thief, None, None).await.unwrap_err();
    assert!(
        matches!(
            &e,
            CompileError::Sealed {
                source: SealError::Mismatch,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("static_headers"), "{e}");
    // The victim is untouched.
    compile(&api.pool, &victim, None, None).await.unwrap();
}

#[tokio::test]
async fn the_previous_secret_is_erased_once_its_grace_period_ends() {
    let api = Api::start().await;
    let token = api.account("grace@example.com").await;
    let a = pid(&api.project(&token, "a").await);
    let b = pid(&api.project(&token, "b").await);
    for id in [&a, &b] {
        let (s, _) = api
            .call(
                "POST",
                &format!("/v1/projects/{id}/secrets/rotate"),
                Some(&token),
                Some(json!({"grace_seconds": 3600})),
            )
            .await;
        assert_eq!(s, 200);
    }
    let previous = |id: ProjectId| {
        let pool = api.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT previous_hmac_secret FROM token_secrets WHERE project_id = $1",
            )
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(previous(a.clone()).await.is_some());
    // Within the grace period the sweep keeps it.
    assert_eq!(secret_store::sweep(&api.pool).await.unwrap(), 0);
    // The grace period ends (the deadline is moved, as time passing would).
    sqlx::query("UPDATE token_secrets SET previous_valid_until = now() - interval '1 second'")
        .execute(&api.pool)
        .await
        .unwrap();
    // Compiling erases it for that project...
    let rotor_control_plane::tenant::Compiled { config, .. } =
        compile(&api.pool, &a, None, None).await.unwrap();
    assert!(config.client.token.hmac_previous_secret_key.is_empty());
    assert_eq!(previous(a.clone()).await, None);
    assert!(previous(b.clone()).await.is_some());
    // ...and the periodic sweep for all.
    assert_eq!(secret_store::sweep(&api.pool).await.unwrap(), 1);
    assert_eq!(previous(b.clone()).await, None);
    let until: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT previous_valid_until FROM token_secrets WHERE project_id = $1")
            .bind(&b)
            .fetch_one(&api.pool)
            .await
            .unwrap();
    assert_eq!(until, None);
}

#[tokio::test]
async fn plaintext_secrets_left_by_an_older_version_are_sealed_at_start_up_once() {
    let api = Api::start().await;
    let token = api.account("legacy@example.com").await;
    let id = pid(&api.project(&token, "legacy").await);
    // What a database from before sealing holds.
    sqlx::query(
        "UPDATE token_secrets SET hmac_secret = 'legacy-plain-secret', \
           previous_hmac_secret = 'legacy-old-secret', previous_valid_until = now() + interval '1 hour' \
         WHERE project_id = $1",
    )
    .bind(&id)
    .execute(&api.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE projects SET settings = $2 WHERE id = $1")
        .bind(&id)
        .bind(settings_with_header(SECRET_HEADER))
        .execute(&api.pool)
        .await
        .unwrap();

    let report = secret_store::seal_at_rest(&api.pool).await.unwrap();
    assert_eq!(
        (report.token_rows, report.settings_rows, report.unknown_key),
        (1, 1, 0)
    );
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT t::text FROM token_secrets t UNION ALL SELECT p::text FROM projects p",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    let dump = dump.join("\n");
    for plain in [
        "legacy-plain-secret",
        "legacy-old-secret",
        "backend-credential",
    ] {
        assert!(!dump.contains(plain), "{plain} still in plaintext");
    }
    let rotor_control_plane::tenant::Compiled { config, .. } =
        compile(&api.pool, &id, None, None).await.unwrap();
    assert_eq!(config.client.token.hmac_secret_key, "legacy-plain-secret");
    assert_eq!(
        config.client.token.hmac_previous_secret_key,
        "legacy-old-secret"
    );
    assert_eq!(
        config.client.proxy.connect.http.static_headers["Authorization"],
        SECRET_HEADER
    );
    // A second start-up changes nothing.
    let again = secret_store::seal_at_rest(&api.pool).await.unwrap();
    assert_eq!(again, secret_store::SealReport::default());
}

/// Starts `rotor-control-plane serve` on the test database with `env`; returns the child and
/// what it printed until it listened or exited (bounded).
async fn serve(api: &Api, env: &[(&str, &str)]) -> (tokio::process::Child, String, bool) {
    use tokio::io::AsyncBufReadExt as _;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotor-control-plane"));
    cmd.arg("serve")
        .env("DATABASE_URL", api.database_url())
        .env("ROTOR_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove("ROTOR_SECRET_KEY")
        .env_remove("ROTOR_SECRET_KEY_FILE")
        .env_remove("ROTOR_STATE_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let (mut out_done, mut err_done) = (false, false);
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while !(out_done && err_done) {
            tokio::select! {
                line = stdout.next_line(), if !out_done => match line.unwrap() {
                    Some(l) if l.contains("listening on") => return true,
                    Some(l) => seen.push_str(&format!("{l}\n")),
                    None => out_done = true,
                },
                line = stderr.next_line(), if !err_done => match line.unwrap() {
                    Some(l) => seen.push_str(&format!("{l}\n")),
                    None => err_done = true,
                },
            }
        }
        false
    })
    .await
    .expect("the control plane starts or exits within 30 s");
    // What it logged before listening is in the pipe already.
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_millis(500), stderr.next_line()).await
    {
        seen.push_str(&format!("{l}\n"));
    }
    (child, seen, listening)
}

#[tokio::test]
async fn without_a_secret_key_the_server_generates_a_private_development_key_and_warns() {
    use std::os::unix::fs::PermissionsExt as _;
    let api = Api::start().await;
    let dir = std::env::temp_dir().join(format!("rotor-state-{}", uuid_like()));
    let (mut child, seen, listening) =
        serve(&api, &[("ROTOR_STATE_DIR", dir.to_str().unwrap())]).await;
    assert!(listening, "{seen}");
    assert!(seen.contains("development key"), "{seen}");
    let key = dir.join("secret.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    // A malformed key stops the server at start-up, without echoing it.
    let (_child, seen, listening) = serve(&api, &[("ROTOR_SECRET_KEY", "not-a-key-at-all")]).await;
    assert!(!listening, "{seen}");
    assert!(seen.contains("ROTOR_SECRET_KEY must be 32 bytes"), "{seen}");
    assert!(!seen.contains("not-a-key-at-all"), "{seen}");
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A project's webhook signing secret is a secret like the proxies' headers: sealed in
/// Postgres, open for the tenant's config and the owner, redacted in the audit log; and a
/// hosted project sets only what cannot make one project hold more of the machine than
/// another (no queue, batch, retry or dead-letter bounds, a timeout of at most 10 s).
#[tokio::test]
async fn a_webhook_secret_is_sealed_and_hosted_webhooks_keep_the_operators_bounds() {
    const HOOK_SECRET: &str = "whsec-4b1d2c3e5f6a7b8c";
    let api = Api::start().await;
    let token = api.account("hooks@example.com").await;
    let id = pid(&api.project(&token, "hooks").await);
    let webhooks = json!({"webhooks": {"enabled": true, "url": "https://hooks.example.com/rotor",
        "secret": HOOK_SECRET, "events": ["member_added", "member_removed"], "grace": "3s",
        "timeout": "4s"}});
    let (st, b) = api
        .patch_settings(&token, id.as_str(), webhooks.clone())
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["settings"], webhooks,
        "the owner reads back what they set"
    );

    let dump: Vec<String> = sqlx::query_scalar("SELECT p::text FROM projects p")
        .fetch_all(&api.pool)
        .await
        .unwrap();
    assert!(
        !dump.join("\n").contains(HOOK_SECRET),
        "stored in plaintext"
    );
    let rotor_control_plane::tenant::Compiled { config, .. } =
        compile(&api.pool, &id, None, None).await.unwrap();
    assert!(config.webhooks.enabled);
    assert_eq!(config.webhooks.secret, HOOK_SECRET);
    assert_eq!(config.webhooks.events, ["member_added", "member_removed"]);
    let audit = audit_text(&api).await;
    assert!(
        !audit.contains(HOOK_SECRET) && !audit.contains("sealed:v1:"),
        "{audit}"
    );

    for (settings, field) in [
        (
            json!({"queue_size": 1_000_000}),
            "settings.webhooks.queue_size",
        ),
        (
            json!({"max_attempts": 20}),
            "settings.webhooks.max_attempts",
        ),
        (
            json!({"dead_letter_size": 10}),
            "settings.webhooks.dead_letter_size",
        ),
        (json!({"timeout": "60s"}), "settings.webhooks.timeout"),
        (json!({"secret": "short"}), "settings.webhooks.secret"),
        (json!({"surprise": true}), "settings.webhooks.surprise"),
        (
            json!({"enabled": true, "url": "ftp://x.example", "secret": HOOK_SECRET}),
            "settings.webhooks.url",
        ),
        (
            json!({"enabled": true, "url": "https://x.example", "secret": HOOK_SECRET,
                "events": ["member_added", "nope"]}),
            "settings.webhooks.events",
        ),
    ] {
        let (st, b) = api
            .patch_settings(&token, id.as_str(), json!({"webhooks": settings}))
            .await;
        assert_eq!(st, 400, "{settings} → {b}");
        let got = b["error"]["field"].as_str().unwrap_or_default().to_owned();
        assert!(got.starts_with(field), "{settings}: {got} in {b}");
    }
}
