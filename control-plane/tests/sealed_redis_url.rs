//! A project's own Redis URL (which may carry a password) is sealed at rest like the other
//! secrets: the operator's command stores it sealed and audits only that it changed, the
//! tenant's compiled config has the real URL, no API shows it, a plaintext value left by an
//! older version is sealed at start-up, and a sealed value copied to another project does
//! not open.

mod common;
mod fixtures;

use common::Api;
use fixtures::*;
use rotor_control_plane::ids::ProjectId;
use rotor_control_plane::sealed::SealError;
use rotor_control_plane::secret_store;
use rotor_control_plane::tenant::{compile, CompileError, Compiled};
use serde_json::json;

const URL: &str = "redis://:hunter2-redis-pass@redis.internal:6380/0";
const PASSWORD: &str = "hunter2-redis-pass";

async fn redis_project(api: &Api, token: &str, name: &str) -> (ProjectId, String) {
    let (s, p) = api
        .call(
            "POST",
            "/v1/projects",
            Some(token),
            Some(json!({"name": name, "engine": "redis"})),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    (pid(&p), p["slug"].as_str().unwrap().to_owned())
}

/// Runs `rotor-control-plane operator set-redis-url …` with `stdin`, in this test's
/// environment (so it finds the same secret key as this process).
async fn set_redis_url(api: &Api, args: &[&str], stdin: &str) -> (bool, String) {
    let args = [&["set-redis-url"], args].concat();
    api.operator("redis-ops", "warn", &args, stdin).await
}

async fn stored(api: &Api, id: &ProjectId) -> Option<String> {
    sqlx::query_scalar("SELECT redis_url FROM projects WHERE id = $1")
        .bind(id)
        .fetch_one(&api.pool)
        .await
        .unwrap()
}

async fn address(api: &Api, id: &ProjectId, default: Option<&str>) -> Vec<String> {
    let Compiled { config, .. } = compile(&api.pool, id, default, None).await.unwrap();
    config.engine.redis.address.0
}

#[tokio::test]
async fn the_operator_sets_a_sealed_redis_url_that_only_the_compiled_config_reveals() {
    let api = Api::start().await;
    let token = api.account("redis@example.com").await;
    let (id, slug) = redis_project(&api, &token, "own redis").await;
    let version = api.version(id.as_str()).await;

    let (ok, out) = set_redis_url(&api, &[&slug], &format!("{URL}\n")).await;
    assert!(ok, "{out}");
    assert!(
        !out.contains(PASSWORD),
        "the command never prints it: {out}"
    );
    assert!(api.version(id.as_str()).await > version, "pushed live");
    // The column holds no plaintext; the compiled config has the real URL.
    let dump: Vec<String> = sqlx::query_scalar("SELECT p::text FROM projects p")
        .fetch_all(&api.pool)
        .await
        .unwrap();
    let dump = dump.join("\n");
    assert!(
        !dump.contains(PASSWORD) && !dump.contains("redis.internal"),
        "{dump}"
    );
    assert!(stored(&api, &id).await.unwrap().starts_with("sealed:v1:"));
    assert_eq!(
        address(&api, &id, Some("redis://default:6379")).await,
        [URL]
    );
    // No API shows it, sealed or not.
    let (s, got) = api.get_project(&token, id.as_str()).await;
    assert_eq!(s, 200);
    assert!(!got.to_string().contains(PASSWORD) && !got.to_string().contains("sealed:"));
    // The audit log says that it changed, never what it is.
    let audit = audit_text(&api).await;
    assert!(
        audit.contains("operator:redis-ops operator.set_redis_url"),
        "{audit}"
    );
    assert!(audit.contains(r#""redis_url": "changed""#), "{audit}");
    assert!(
        !audit.contains(PASSWORD) && !audit.contains("sealed:v1:"),
        "{audit}"
    );

    // A URL the data plane cannot use is refused without being repeated.
    let (ok, out) = set_redis_url(&api, &[&slug], "http://:other-secret@x:1\n").await;
    assert!(!ok && out.contains("redis://"), "{out}");
    assert!(!out.contains("other-secret"), "{out}");
    // --clear goes back to the installation's Redis.
    let (ok, out) = set_redis_url(&api, &[&slug, "--clear"], "").await;
    assert!(ok, "{out}");
    assert_eq!(stored(&api, &id).await, None);
    assert_eq!(
        address(&api, &id, Some("redis://default:6379")).await,
        ["redis://default:6379"]
    );
}

#[tokio::test]
async fn a_plaintext_redis_url_left_by_an_older_version_is_sealed_at_start_up_once() {
    let api = Api::start().await;
    let token = api.account("legacy-redis@example.com").await;
    let (id, _) = redis_project(&api, &token, "legacy redis").await;
    sqlx::query("UPDATE projects SET redis_url = $2 WHERE id = $1")
        .bind(&id)
        .bind(URL)
        .execute(&api.pool)
        .await
        .unwrap();

    let report = secret_store::seal_at_rest(&api.pool).await.unwrap();
    assert_eq!((report.redis_url_rows, report.unknown_key), (1, 0));
    let sealed = stored(&api, &id).await.unwrap();
    assert!(sealed.starts_with("sealed:v1:") && !sealed.contains(PASSWORD));
    assert_eq!(address(&api, &id, None).await, [URL]);
    let again = secret_store::seal_at_rest(&api.pool).await.unwrap();
    assert_eq!(again, secret_store::SealReport::default());
    assert_eq!(stored(&api, &id).await.unwrap(), sealed);
}

#[tokio::test]
async fn a_sealed_redis_url_copied_into_another_project_does_not_open() {
    let api = Api::start().await;
    let token = api.account("redis-thief@example.com").await;
    let (victim, _) = redis_project(&api, &token, "victim").await;
    let (thief, _) = redis_project(&api, &token, "thief").await;
    sqlx::query("UPDATE projects SET redis_url = $2 WHERE id = $1")
        .bind(&victim)
        .bind(secret_store::seal_redis_url(&victim, URL).unwrap())
        .execute(&api.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE projects SET redis_url = (SELECT redis_url FROM projects WHERE id = $1) WHERE id = $2",
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
                field: "projects.redis_url",
                source: SealError::Mismatch,
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    // A value sealed for another kind of field does not open as a Redis URL either.
    sqlx::query("UPDATE projects SET redis_url = $2 WHERE id = $1")
        .bind(&thief)
        .bind(secret_store::seal_token_secret(&thief, URL).unwrap())
        .execute(&api.pool)
        .await
        .unwrap();
    assert!(matches!(
        compile(&api.pool, &thief, None, None).await,
        Err(CompileError::Sealed {
            source: SealError::Mismatch,
            ..
        })
    ));
    // The victim is untouched.
    assert_eq!(address(&api, &victim, None).await, [URL]);
}
