//! Sending dead-lettered webhook batches again (`POST /admin/webhooks/redeliver` on the admin
//! listener): one by its webhook id or all of them, each keeping its id and signed with the
//! secret in force when it goes out; a batch that fails again comes back to the ring under the
//! same id; the call needs the admin token and says clearly when there is nothing to send or
//! webhooks are off. A real HTTP receiver and real WebSocket clients, in one process.

mod common;
mod webhooks_support;

use common::{Client, TestServer, ADMIN_TOKEN};
use rotor_data_plane::webhooks::sign::verify;
use serde_json::{json, Value};
use webhooks_support::*;

const ROTATED: &str = "rotated-hook-secret-0123";

async fn redeliver(admin: &str, token: &str, body: Value) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(format!("http://{admin}/admin/webhooks/redeliver"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// Applies `change` to the running config as a push would.
fn reconfigure(s: &TestServer, change: impl FnOnce(&mut rotor_tenant_config::WebhooksSection)) {
    let mut tenant = s.node.config.load().tenant.clone();
    change(&mut tenant.webhooks);
    tenant.rotor.config_version += 1;
    s.node.config.apply(tenant).unwrap();
}

fn letters(view: &Value) -> Vec<Value> {
    view["dead_letters"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_dead_letter_is_sent_again_with_its_webhook_id_and_the_current_secret() {
    let mut rx = Receiver::start(&[503, 503], 200).await;
    let s = TestServer::start(hooks(
        &rx.url,
        "0s",
        json!({"max_attempts": 2, "events": ["channel_occupied"]}),
    ))
    .await;
    let admin = s.admin_addr.to_string();
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    subscribe(&mut c, "chat:again").await;
    let failed = [rx.hit().await, rx.hit().await];
    assert_eq!((failed[0].status, failed[1].status), (503, 503));
    let view = admin_until(&admin, |v| !letters(v).is_empty()).await;
    let letter = letters(&view)[0].clone();
    assert_eq!(letter["webhook_id"], failed[0].id.as_str());

    // Refused: without the admin token, for an id the ring does not hold, with no choice.
    let (status, _) = redeliver(&admin, "wrong", json!({"all": true})).await;
    assert_eq!(status, 401);
    let (status, body) = redeliver(&admin, ADMIN_TOKEN, json!({"webhook_id": "nope"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = redeliver(&admin, ADMIN_TOKEN, json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(letters(&admin_webhooks(&admin).await).len(), 1, "untouched");

    // The secret is rotated, then the batch is sent again: same id, same events, signed with
    // the new secret.
    reconfigure(&s, |w| w.secret = ROTATED.into());
    let (status, body) = redeliver(&admin, ADMIN_TOKEN, json!({"webhook_id": failed[0].id})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"batches": 1, "events": 1}));
    let again = rx.hit().await;
    assert_eq!(again.status, 200);
    assert_eq!(again.id, failed[0].id);
    assert_eq!(again.json["events"], letter["events"]);
    assert!(verify(ROTATED.as_bytes(), &again.body, &again.signature));
    assert!(!verify(
        HOOK_SECRET.as_bytes(),
        &again.body,
        &again.signature
    ));
    let view = admin_until(&admin, |v| letters(v).is_empty() && v["queued"] == 0).await;
    assert!(!view.to_string().contains(ROTATED));
    // Sent once: asking again finds nothing.
    let (status, _) = redeliver(&admin, ADMIN_TOKEN, json!({"webhook_id": failed[0].id})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn all_dead_letters_go_again_and_one_that_fails_again_comes_back_under_its_id() {
    let mut rx = Receiver::start(&[], 503).await;
    let s = TestServer::start(hooks(
        &rx.url,
        "0s",
        json!({"max_attempts": 1, "batch_size": 1, "events": ["channel_occupied"]}),
    ))
    .await;
    let admin = s.admin_addr.to_string();
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    subscribe(&mut c, "chat:one").await;
    subscribe(&mut c, "chat:two").await;
    let first = [rx.hit().await.id, rx.hit().await.id];
    let view = admin_until(&admin, |v| letters(v).len() == 2).await;
    let mut kept: Vec<String> = letters(&view)
        .iter()
        .map(|l| l["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, first);

    let (status, body) = redeliver(&admin, ADMIN_TOKEN, json!({"all": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"batches": 2, "events": 2}));
    let resent = [rx.hit().await.id, rx.hit().await.id];
    assert_eq!(resent, first, "oldest first, each with its own id");
    let view = admin_until(&admin, |v| letters(v).len() == 2 && v["queued"] == 0).await;
    kept = letters(&view)
        .iter()
        .map(|l| l["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, first, "back in the ring under the same ids");
    assert!(letters(&view).iter().all(|l| l["status"] == 503));

    // Webhooks off: nothing to send with, and the ring stays as it is.
    reconfigure(&s, |w| w.enabled = false);
    let (status, body) = redeliver(&admin, ADMIN_TOKEN, json!({"all": true})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("webhooks are off"));
    assert_eq!(letters(&admin_webhooks(&admin).await).len(), 2);
}
