//! One account cannot fill the shared database through the management API: settings and
//! namespace options are bounded in size, writes are budgeted per account (429 with
//! `Retry-After` beyond the budget, other accounts unaffected), and the audit log keeps a
//! bounded number of entries per account.

mod common;

use common::Api;
use futures_util::stream::{self, StreamExt};
use rotor_control_plane::audit::{self, Actor, Entry, KEPT_PER_ACCOUNT};
use rotor_control_plane::ids::AccountId;
use serde_json::json;

#[tokio::test]
async fn a_megabyte_of_allowed_origins_or_namespace_options_is_refused_naming_the_field() {
    let api = Api::start().await;
    let alice = api.account("alice@example.com").await;
    let p = api.project(&alice, "origins").await;
    let id = p["id"].as_str().unwrap();

    // About 1 MB of origins, each one valid on its own.
    let origins: Vec<String> = (0..30_000)
        .map(|i| format!("https://host-{i:06}.example.com"))
        .collect();
    let (s, b) = api
        .patch_settings(&alice, id, json!({ "allowed_origins": origins }))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "settings.allowed_origins", "{b}");

    // Small enough in total, but more origins than one project may list.
    let origins: Vec<String> = (0..300)
        .map(|i| format!("https://{i}.example.com"))
        .collect();
    let (s, b) = api
        .patch_settings(&alice, id, json!({ "allowed_origins": origins }))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "settings.allowed_origins", "{b}");

    // One huge option of a namespace.
    let (s, b) = api
        .put_namespace(
            &alice,
            id,
            "chat",
            json!({ "presence": true, "junk": "x".repeat(1 << 20) }),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "options.junk", "{b}");

    // Nothing of it was stored: a reasonable list still goes through.
    let (s, b) = api
        .patch_settings(
            &alice,
            id,
            json!({ "allowed_origins": ["https://app.example.com"] }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn a_burst_far_above_the_write_budget_is_refused_while_another_account_still_writes() {
    let api = Api::start().await;
    let alice = api.account("alice@example.com").await;
    let bob = api.account("bob@example.com").await;
    let alices = api.project(&alice, "busy").await;
    let bobs = api.project(&bob, "quiet").await;
    let (alice_id, bob_id) = (
        alices["id"].as_str().unwrap().to_owned(),
        bobs["id"].as_str().unwrap().to_owned(),
    );

    // 400 renames, 16 at a time: far more than a burst of 100 plus what refills meanwhile.
    let url = format!("{}/v1/projects/{alice_id}", api.base);
    let answers: Vec<(u16, Option<u64>)> = stream::iter(0..400)
        .map(|n| {
            let req = api
                .http
                .patch(&url)
                .bearer_auth(&alice)
                .json(&json!({ "name": format!("busy {n}") }));
            async move {
                let resp = req.send().await.unwrap();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                (resp.status().as_u16(), retry)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    let done = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(refused.len() + done, answers.len(), "{answers:?}");
    assert!(done >= 100, "the burst goes through: {done}");
    assert!(
        refused.len() >= 100,
        "the excess is refused: {}",
        refused.len()
    );
    assert!(
        refused
            .iter()
            .all(|(_, retry)| retry.is_some_and(|s| s >= 1)),
        "every 429 says when to come back"
    );

    // Bob's budget is his own: his change goes through while Alice's is spent.
    let (s, b) = api
        .patch_project(&bob, &bob_id, json!({ "name": "still quiet" }))
        .await;
    assert_eq!(s, 200, "{b}");
    // Reading is not budgeted.
    let (s, _) = api.get_project(&alice, &alice_id).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn the_audit_log_keeps_each_accounts_newest_entries_only() {
    let api = Api::start().await;
    api.account("alice@example.com").await;
    api.account("bob@example.com").await;
    let id_of = |email: &'static str| {
        sqlx::query_scalar::<_, AccountId>("SELECT id FROM accounts WHERE email = $1")
            .bind(email)
            .fetch_one(&api.pool)
    };
    let (alice, bob) = (
        id_of("alice@example.com").await.unwrap(),
        id_of("bob@example.com").await.unwrap(),
    );
    let write = |account: AccountId, n: i64| {
        let pool = api.pool.clone();
        async move {
            let mut conn = pool.acquire().await.unwrap();
            audit::record(
                &mut conn,
                Entry {
                    actor: Actor::Account(&account),
                    account: Some(&account),
                    project: None,
                    action: "test.write",
                    target: &n.to_string(),
                    before: None,
                    after: None,
                },
            )
            .await
            .unwrap();
        }
    };
    write(bob.clone(), 0).await;
    for n in 0..KEPT_PER_ACCOUNT + 25 {
        write(alice.clone(), n).await;
    }
    let count = |account: AccountId| {
        let pool = api.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_log WHERE account_id = $1")
                .bind(&account)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(alice.clone()).await, KEPT_PER_ACCOUNT);
    let oldest: String = sqlx::query_scalar(
        "SELECT target FROM audit_log WHERE account_id = $1 AND action = 'test.write' ORDER BY id LIMIT 1",
    )
    .bind(&alice)
    .fetch_one(&api.pool)
    .await
    .unwrap();
    // The 25 oldest (and anything written before them) are gone.
    assert_eq!(oldest, "25");
    // Bob's entries (his sign-up's and the one above) are untouched by Alice's.
    assert!(count(bob).await >= 1);
}

/// A live usage stream is authorised again before every event: revoking the token it was
/// opened with ends it (within a couple of its ticks). And one account holds only so many
/// streams open at once.
#[tokio::test]
async fn a_live_usage_stream_ends_once_its_token_is_revoked_and_streams_are_capped_per_account() {
    use rotor_control_plane::rest::usage::MAX_LIVE_STREAMS_PER_ACCOUNT;
    use std::time::Duration;

    let api = Api::start().await;
    let alice = api.account("alice@example.com").await;
    let p = api.project(&alice, "live").await;
    let id = p["id"].as_str().unwrap();
    let (s, b) = api
        .login(
            json!({"email": "alice@example.com", "password": "a long password", "name": "watcher"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let watcher = b["token"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/projects/{id}/usage/live", api.base);

    let mut stream = api
        .http
        .get(&url)
        .bearer_auth(&watcher)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("the first event comes")
        .unwrap()
        .expect("the stream is open");
    assert!(String::from_utf8_lossy(&first).contains("event: usage"));

    let tokens = api.tokens(&alice).await;
    let watcher_id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "watcher")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(api.revoke_token(&alice, &watcher_id).await, 204);

    // Whatever was on its way still arrives; then the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(_event) = stream.chunk().await.unwrap() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its token");

    // The cap: as many streams as allowed, then a 429 that says when to come back.
    let mut open = Vec::new();
    for _ in 0..MAX_LIVE_STREAMS_PER_ACCOUNT {
        let resp = api.http.get(&url).bearer_auth(&alice).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        open.push(resp);
    }
    let resp = api.http.get(&url).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
}
