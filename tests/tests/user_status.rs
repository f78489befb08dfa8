//! The hosted `user_status` setting: off, a project's `/t/{slug}/api/user_status` answers 108
//! through the edge; its owner turns it on with `PATCH /v1/projects/{id}` and the same call
//! then reports the users connected through the edge. Another account can neither turn it on
//! for someone else's project nor see that project, and a last-seen TTL past what a hosted
//! project may keep is refused naming the setting.

use anyhow::Result;
use rotor_e2e::control_plane::{open_chat, ws::Subscriber, ControlPlane, Project};
use serde_json::{json, Value};

async fn user_status(cp: &ControlPlane, p: &Project, users: &[&str]) -> Result<Value> {
    Ok(cp
        .http
        .post(format!("{}/user_status", cp.api_url(&p.slug)))
        .header("X-API-Key", &p.key)
        .body(json!({ "users": users }).to_string())
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await?
        .json()
        .await?)
}

#[tokio::test]
async fn the_owner_turns_user_status_on_over_rest_and_nobody_else_can() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let owner = cp.account("owner@example.com").await?;
    let other = cp.account("other@example.com").await?;
    let p = cp
        .project(&owner, "presence", &[("chat", open_chat())])
        .await?;
    let _alice = Subscriber::open(&cp.ws_url(&p.slug), &p.secret, "alice", "chat:lobby").await?;

    let off = user_status(&cp, &p, &["alice"]).await?;
    assert_eq!(off["error"]["code"], 108, "{off}");

    // Another account: the project does not exist for it, and nothing changes.
    let on = json!({"settings": {"user_status": {"enabled": true}}});
    let (s, b) = cp.patch_project(&other, &p.id, on.clone()).await?;
    assert_eq!(s, 404, "{b}");
    let (_, seen) = cp.get_project(&owner, &p.id).await?;
    assert!(seen["settings"].get("user_status").is_none(), "{seen}");
    assert_eq!(
        user_status(&cp, &p, &["alice"]).await?["error"]["code"],
        108
    );

    // A hosted project may not keep last-seen records for longer than a week.
    let (s, b) = cp
        .patch_project(
            &owner,
            &p.id,
            json!({"settings": {"user_status": {"enabled": true, "last_seen_ttl": "9000h"}}}),
        )
        .await?;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["error"]["field"], "settings.user_status.last_seen_ttl",
        "{b}"
    );

    let (s, b) = cp.patch_project(&owner, &p.id, on).await?;
    assert_eq!(s, 200, "{b}");
    cp.wait_applied(&owner, &p.id).await?;
    let answer = user_status(&cp, &p, &["alice", "bob"]).await?;
    assert_eq!(
        answer["result"]["statuses"],
        json!([
            {"user": "alice", "online": true, "connections": 1, "last_seen": 0},
            {"user": "bob", "online": false, "connections": 0, "last_seen": 0},
        ]),
        "{answer}"
    );
    Ok(())
}
