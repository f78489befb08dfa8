//! The dashboard's front door and its last confirmations, request by request against a real
//! database: the product page for visitors (and the projects for a signed-in user), the REST
//! API reference rendered from the OpenAPI document, every `aria-labelledby` naming an element
//! of its page, and namespace deletion and management-token revocation each confirmed on a
//! page of its own (no JavaScript `confirm()`), for the owner only.

mod auth;
mod common;

use auth::*;

const PUBLIC: &str = "https://rotor.example";

/// The `id`s of a page.
fn ids(html: &str) -> Vec<&str> {
    html.split(" id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// Every `aria-labelledby` id of a page that names no element of it.
fn dangling_labels(html: &str) -> Vec<String> {
    let ids = ids(html);
    html.split("aria-labelledby=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .flat_map(|v| v.split_whitespace())
        .filter(|id| !ids.contains(id))
        .map(str::to_owned)
        .collect()
}

/// An account with a project and a namespace `chat`: (browser, project id, CSRF token).
async fn owner_with_chat(app: &App, from: &str, email: &str) -> (Browser, String, String) {
    let (mut b, id, csrf) = owner(app, from, email).await;
    let page = b
        .post(
            &format!("/projects/{id}/namespaces"),
            &[("csrf", &csrf), ("name", "chat"), ("preset", "chat")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    (b, id, csrf)
}

#[tokio::test]
async fn visitors_get_the_product_page_with_the_quick_start_and_signed_in_users_their_projects() {
    let app = App::start(PUBLIC).await;
    let mut visitor = app.browser("127.0.0.71");
    let page = visitor.get("/").await;
    assert_eq!(page.status, 200);
    for text in [
        "Real-time messaging for your app, hosted",
        "href=\"/signup\"",
        "href=\"/login\"",
        "Your first message in two minutes",
        "new Centrifuge(&#39;wss://rotor.example/t/your-project/connection/websocket&#39;",
        "newSubscription(&#39;updates:lobby&#39;)",
        "curl -sS -X POST &#39;https://rotor.example/t/your-project/api/publish&#39;",
        "href=\"/docs/api\"",
    ] {
        assert!(
            page.body.contains(text),
            "{text} missing from\n{}",
            page.body
        );
    }
    assert_eq!(dangling_labels(&page.body), Vec::<String>::new());

    assert_eq!(
        visitor.signup("vic@example.com", PASSWORD).await.status,
        303
    );
    let page = visitor.get("/").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/projects"))
    );
}

#[tokio::test]
async fn the_api_reference_renders_every_operation_of_the_openapi_document_without_scripts() {
    let app = App::start(PUBLIC).await;
    let mut visitor = app.browser("127.0.0.72");
    let page = visitor.get("/docs/api").await;
    assert_eq!(page.status, 200);
    let (_, _, doc) = app
        .call("127.0.0.72", "GET", "/v1/openapi.json", None, None)
        .await;
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let anchor = format!("id=\"op-{method}-");
            assert!(page.body.contains(&anchor), "{method} {path}");
            let shown = format!(
                ">{}</span> <code class=\"api-path\">{}</code>",
                method.to_ascii_uppercase(),
                path
            );
            assert!(page.body.contains(&shown), "{shown}");
        }
    }
    assert_eq!(
        page.body.matches("class=\"card api-op\"").count(),
        operations
    );
    for text in [
        "Accounts and tokens",
        "Namespaces",
        "href=\"/v1/openapi.json\"",
        "href=\"#schema-ChannelOptions\"",
        "id=\"schema-ChannelOptions\"",
        ">https://rotor.example/v1</code>",
        "Management token required",
    ] {
        assert!(page.body.contains(text), "{text}");
    }
    assert!(
        !page.body.contains("<script src=\"http"),
        "no outside scripts"
    );
    assert_eq!(dangling_labels(&page.body), Vec::<String>::new());
    // The footer's REST API link leads here.
    assert!(visitor
        .get("/login")
        .await
        .body
        .contains("href=\"/docs/api\" id=\"footer-api\""));
}

#[tokio::test]
async fn every_aria_labelledby_names_an_element_of_its_page() {
    let app = App::start(PUBLIC).await;
    let (mut b, project, csrf) = owner_with_chat(&app, "127.0.0.73", "aria@example.com").await;
    let page = b
        .post("/account/tokens", &[("csrf", &csrf), ("name", "ci")])
        .await;
    assert_eq!(page.status, 303);
    let token: String = sqlx::query_scalar("SELECT id FROM management_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let page = b
        .post(
            &format!("/projects/{project}/keys"),
            &[("csrf", &csrf), ("name", "backend")],
        )
        .await;
    assert_eq!(page.status, 303);
    let key: String = sqlx::query_scalar("SELECT id FROM api_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let account = b.get("/account").await;
    assert!(
        account.body.contains("aria-labelledby=\"tokens-title\"")
            && account.body.contains("<h2 id=\"tokens-title\">"),
        "the tokens section is labelled by its heading"
    );
    for path in [
        "/".to_owned(),
        "/projects".into(),
        "/account".into(),
        "/account/audit".into(),
        format!("/account/tokens/{token}/revoke"),
        "/docs/api".into(),
        format!("/projects/{project}"),
        format!("/projects/{project}/keys"),
        format!("/projects/{project}/keys/{key}/revoke"),
        format!("/projects/{project}/namespaces"),
        format!("/projects/{project}/namespaces/chat"),
        format!("/projects/{project}/namespaces/chat/delete"),
        format!("/projects/{project}/usage"),
        format!("/projects/{project}/console"),
        format!("/projects/{project}/settings"),
        format!("/projects/{project}/audit"),
    ] {
        let page = b.get(&path).await;
        assert!(
            page.status == 200 || page.status == 303,
            "{path}: {}",
            page.status
        );
        assert_eq!(dangling_labels(&page.body), Vec::<String>::new(), "{path}");
    }
    let mut visitor = app.browser("127.0.0.74");
    for path in [
        "/",
        "/login",
        "/signup",
        "/password/forgot",
        "/password/forgot/sent",
    ] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(dangling_labels(&page.body), Vec::<String>::new(), "{path}");
    }
}

#[tokio::test]
async fn a_namespace_is_deleted_only_from_its_confirmation_page_and_only_by_its_owner() {
    let app = App::start(PUBLIC).await;
    let (mut ann, project, csrf) = owner_with_chat(&app, "127.0.0.75", "ann@example.com").await;
    let edit = ann
        .get(&format!("/projects/{project}/namespaces/chat"))
        .await;
    let confirm = format!("/projects/{project}/namespaces/chat/delete");
    assert!(edit.body.contains(&format!("href=\"{confirm}\"")));
    assert!(
        !edit.body.contains("data-confirm"),
        "no JavaScript confirm()"
    );

    let page = ann.get(&confirm).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Delete the namespace “chat”?"));
    assert!(
        page.body.contains("presence"),
        "it says what the namespace does"
    );

    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM namespaces WHERE name = 'chat'")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    // Without the confirmation: nothing deleted, and to the confirmation page.
    let page = ann.post(&confirm, &[("csrf", &csrf)]).await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some(confirm.as_str()))
    );
    assert_eq!(count().await, 1);

    // Another account: 404 for the page and the form.
    let (mut bob, _, bob_csrf) = owner_with_chat(&app, "127.0.0.76", "bob@example.com").await;
    assert_eq!(bob.get(&confirm).await.status, 404);
    let page = bob
        .post(&confirm, &[("csrf", &bob_csrf), ("confirm", "yes")])
        .await;
    assert_eq!(page.status, 404);
    assert_eq!(count().await, 2, "Ann's and Bob's own");

    let page = ann
        .post(&confirm, &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    let list = format!("/projects/{project}/namespaces");
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some(list.as_str()))
    );
    assert_eq!(count().await, 1, "only Bob's is left");
    let page = ann.get(&list).await;
    assert!(
        page.body.contains("Namespace “chat” deleted"),
        "{}",
        page.body
    );
    let page = ann.get(&list).await;
    assert!(
        !page.body.contains("Namespace “chat” deleted"),
        "shown once"
    );
    assert_eq!(ann.get(&confirm).await.status, 404);
    let audit = ann.get(&format!("/projects/{project}/audit")).await;
    assert!(audit.body.contains("Deleted the namespace “chat”"));
}

#[tokio::test]
async fn a_management_token_is_revoked_only_from_its_confirmation_page_and_only_by_its_owner() {
    let app = App::start(PUBLIC).await;
    let mut ann = app.browser("127.0.0.77");
    assert_eq!(ann.signup("ann@example.com", PASSWORD).await.status, 303);
    let csrf = ann.session_csrf().await;
    let page = ann
        .post("/account/tokens", &[("csrf", &csrf), ("name", "terraform")])
        .await;
    assert_eq!(page.status, 303);
    let token: String = sqlx::query_scalar("SELECT id FROM management_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let account = ann.get("/account").await;
    let confirm = format!("/account/tokens/{token}/revoke");
    assert!(account.body.contains(&format!("href=\"{confirm}\"")));
    assert!(
        !account.body.contains("data-confirm"),
        "no JavaScript confirm()"
    );

    let page = ann.get(&confirm).await;
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains("Revoke the management token “terraform”?"));
    let tokens = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM management_tokens")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let page = ann.post(&confirm, &[("csrf", &csrf)]).await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some(confirm.as_str()))
    );
    assert_eq!(tokens().await, 1);

    let mut bob = app.browser("127.0.0.78");
    assert_eq!(bob.signup("bob@example.com", PASSWORD).await.status, 303);
    let bob_csrf = bob.session_csrf().await;
    assert_eq!(bob.get(&confirm).await.status, 404);
    let page = bob
        .post(&confirm, &[("csrf", &bob_csrf), ("confirm", "yes")])
        .await;
    assert_eq!(page.status, 404);
    let page = bob.post(&confirm, &[("csrf", &bob_csrf)]).await;
    assert_eq!(
        page.status, 404,
        "not even a redirect for someone else's token"
    );
    assert_eq!(tokens().await, 1);

    let page = ann
        .post(&confirm, &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/account#tokens"))
    );
    assert_eq!(tokens().await, 0);
    let page = ann.get("/account").await;
    assert!(page.body.contains("Token revoked."));
    assert_eq!(ann.get(&confirm).await.status, 404);
}
