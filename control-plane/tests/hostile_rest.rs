//! Hostile input against the REST API and the static assets: SQL in every field and id, and
//! dot segments in paths, are plain data or a 404.

mod common;

use common::Api;
use serde_json::json;

#[tokio::test]
async fn sql_injection_and_path_traversal_tries_are_plain_data_or_404() {
    let api = Api::start().await;
    let alice = api.account("alice@example.com").await;
    let bob = api.account("bob@example.com").await;
    let bobs = api.project(&bob, "bob app").await;

    // Login with an injection in the email or password: the same 401 as any wrong login.
    for (email, password) in [
        ("' OR '1'='1", "anything-long-enough"),
        ("alice@example.com' --", "anything-long-enough"),
        ("alice@example.com", "' OR '1'='1' --"),
    ] {
        let (s, b) = api
            .call(
                "POST",
                "/v1/tokens",
                None,
                Some(json!({"email": email, "password": password, "name": "x"})),
            )
            .await;
        assert!(s == 401 || s == 400, "{email}: {s} {b}");
    }

    // A project name full of SQL is stored and shown as written.
    let name = "x'); DROP TABLE projects; --";
    let p = api.project(&alice, name).await;
    assert_eq!(p["name"], name);
    let id = p["id"].as_str().unwrap();

    // Ids and names made of SQL or dot segments find nothing.
    let bob_id = bobs["id"].as_str().unwrap();
    for path in [
        format!("/v1/projects/{id}'%20OR%20'1'='1"),
        format!("/v1/projects/{bob_id}'--"),
        "/v1/projects/..%2f..%2f..%2fetc%2fpasswd".to_owned(),
        format!("/v1/projects/{id}/namespaces/..%2f..%2fsecrets"),
        format!("/v1/projects/{id}%2f..%2f{bob_id}/secrets"),
    ] {
        let (s, b) = api.call("GET", &path, Some(&alice), None).await;
        assert_eq!(s, 404, "{path}: {b}");
    }
    let (s, b) = api
        .call(
            "PUT",
            &format!("/v1/projects/{id}/namespaces/..%2fchat"),
            Some(&alice),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "name");
    // Static assets are served by name only.
    for path in ["/static/..%2fCargo.toml", "/static/..%2f..%2fetc%2fpasswd"] {
        let (s, _) = api.call("GET", path, None, None).await;
        assert_eq!(s, 404, "{path}");
    }

    // Everything is still there: both accounts list exactly their own project.
    let (s, list) = api.call("GET", "/v1/projects", Some(&alice), None).await;
    assert_eq!(s, 200);
    assert_eq!(list["projects"].as_array().map(Vec::len), Some(1), "{list}");
    let (_, list) = api.call("GET", "/v1/projects", Some(&bob), None).await;
    assert_eq!(list["projects"][0]["id"], bob_id);
}
