//! "Forgot password?" against a real database and a test mailbox (an SMTP server in the test,
//! so the control plane's real SMTP path sends the mail): the same answer for a known and an
//! unknown address, a link that works once and for 30 minutes, a newer link replacing older
//! ones, every session ended and an audit entry after a reset, only a digest of the token
//! stored, and requests limited per email and per address.

mod auth;
mod common;

use std::time::Duration;

use auth::*;
use rotor_control_plane::secrets::sha256_hex;
use rotor_e2e::{ReceivedMail, SmtpSink};

const PUBLIC: &str = "https://rotor.example";
const NEW_PASSWORD: &str = "a brand new password";
const MAIL_WAIT: Duration = Duration::from_secs(20);

async fn app_with_mailbox() -> (App, SmtpSink) {
    let sink = SmtpSink::start().await.unwrap();
    let app = App::start_with_mail(PUBLIC, Some(&sink.url())).await;
    (app, sink)
}

/// Asks for a reset link for `email` from the browser-less client `b`.
async fn ask(b: &mut Browser, email: &str) -> Page {
    let form = b.get("/password/forgot").await;
    assert_eq!(form.status, 200);
    let csrf = Browser::csrf_in(&form.body);
    b.post("/password/forgot", &[("csrf", &csrf), ("email", email)])
        .await
}

/// The path (with the token) of the reset link in `mail`.
fn link_path(mail: &ReceivedMail) -> String {
    let link = mail
        .link_containing("/password/reset/")
        .unwrap_or_else(|| panic!("no reset link in {}", mail.data));
    assert!(
        link.starts_with(&format!("{PUBLIC}/password/reset/rp_")),
        "{link}"
    );
    link.trim_start_matches(PUBLIC).to_owned()
}

/// Opens the link and submits the new-password form; the form's answer.
async fn choose(b: &mut Browser, path: &str, password: &str, confirm: &str) -> Page {
    let form = b.get(path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = Browser::csrf_in(&form.body);
    b.post(
        path,
        &[
            ("csrf", &csrf),
            ("password", password),
            ("confirm", confirm),
            ("revoke_tokens", "on"),
        ],
    )
    .await
}

#[tokio::test]
async fn a_known_and_an_unknown_address_get_the_same_answer_and_only_the_account_gets_a_working_link(
) {
    let (app, sink) = app_with_mailbox().await;
    let mut ann = app.browser("127.0.0.21");
    assert_eq!(ann.signup("ann@example.com", PASSWORD).await.status, 303);

    let mut visitor = app.browser("127.0.0.22");
    let unknown = ask(&mut visitor, "nobody@example.com").await;
    let known = ask(&mut visitor, "Ann@Example.com").await;
    assert_eq!(
        (
            unknown.status,
            unknown.location.as_deref(),
            unknown.body.as_str()
        ),
        (303, Some("/password/forgot/sent"), "")
    );
    assert_eq!(
        (known.status, known.location.as_deref(), known.body.as_str()),
        (
            unknown.status,
            unknown.location.as_deref(),
            unknown.body.as_str()
        ),
        "the answer does not tell whether an account exists"
    );
    assert_eq!(known.set_cookies, unknown.set_cookies);
    let sent = visitor.get("/password/forgot/sent").await;
    assert_eq!(sent.status, 200);
    assert!(sent
        .body
        .contains("If an account exists for the address you entered"));

    // The request for the unknown address was handled first and sent nothing.
    let mail = sink.next(MAIL_WAIT).await.unwrap();
    assert_eq!(mail.to, ["ann@example.com"]);
    assert_eq!(mail.from, "no-reply@rotor.example");
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Reset your Rotor password")
    );
    assert!(mail.body().contains("30 minutes"), "{}", mail.data);
    assert!(!sink.anything_within(Duration::from_millis(500)).await);

    // Only the token's SHA-256 is stored.
    let path = link_path(&mail);
    let token = path.trim_start_matches("/password/reset/");
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM password_resets")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, [sha256_hex(token)]);
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM password_resets r WHERE row_to_json(r)::text LIKE '%' || $1 || '%'",
    )
    .bind(token)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(plain, 0, "the token itself is nowhere in the table");

    // The link opens the form for Ann's account.
    let form = visitor.get(&path).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Choose a new password"));
    assert!(form.body.contains("ann@example.com"));
}

#[tokio::test]
async fn a_link_works_once_ends_every_session_revokes_tokens_and_is_audited() {
    let (app, sink) = app_with_mailbox().await;
    let mut ann = app.browser("127.0.0.31");
    assert_eq!(ann.signup("ann@example.com", PASSWORD).await.status, 303);
    let mut ann_phone = app.browser("127.0.0.32");
    assert_eq!(
        ann_phone
            .login("ann@example.com", PASSWORD, "")
            .await
            .status,
        303
    );
    let (status, _, token) = app
        .call(
            "127.0.0.31",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials("ann@example.com", PASSWORD)),
        )
        .await;
    assert_eq!(status, 201);
    let token = token["token"].as_str().unwrap().to_owned();

    // Someone guessed until the account's logins are locked; the owner forgot the password.
    let mut guesser = app.browser("127.0.0.35");
    for _ in 0..5 {
        guesser
            .login("ann@example.com", "not the password", "")
            .await;
    }
    assert_eq!(
        guesser.login("ann@example.com", PASSWORD, "").await.status,
        429
    );

    let mut visitor = app.browser("127.0.0.33");
    assert_eq!(ask(&mut visitor, "ann@example.com").await.status, 303);
    let path = link_path(&sink.next(MAIL_WAIT).await.unwrap());

    // Mistakes keep the link working.
    let short = choose(&mut visitor, &path, "short", "short").await;
    assert_eq!(short.status, 422);
    assert!(
        short.body.contains("at least 10 characters"),
        "{}",
        short.body
    );
    let mismatch = choose(&mut visitor, &path, NEW_PASSWORD, "something else entirely").await;
    assert_eq!(mismatch.status, 422);
    assert!(mismatch.body.contains("do not match"));

    let done = choose(&mut visitor, &path, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/login?reset=done"));
    let login = visitor.get("/login?reset=done").await;
    assert!(login.body.contains("Your password was changed"));

    // Once only.
    let again = visitor.get(&path).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("This link does not work any more"));
    let csrf = Browser::csrf_in(&visitor.get("/password/forgot").await.body);
    let replay = visitor
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", "yet another password"),
                ("confirm", "yet another password"),
            ],
        )
        .await;
    assert_eq!(replay.status, 410);

    // Every session ended, the management token revoked, the old password refused.
    for b in [&mut ann, &mut ann_phone] {
        let page = b.get("/projects").await;
        assert_eq!(page.status, 303, "session ended");
    }
    let (status, _, _) = app
        .call("127.0.0.31", "GET", "/v1/tokens", Some(&token), None)
        .await;
    assert_eq!(status, 401, "the management token was revoked");
    // The reset lifted the lock on the account's logins.
    let mut later = app.browser("127.0.0.34");
    assert_eq!(
        later
            .login("ann@example.com", NEW_PASSWORD, "")
            .await
            .status,
        303
    );
    let mut old = app.browser("127.0.0.36");
    assert_eq!(old.login("ann@example.com", PASSWORD, "").await.status, 401);
    let audit = later.get("/account/audit").await;
    assert!(
        audit
            .body
            .contains("Reset the password with a link sent by email"),
        "{}",
        audit.body
    );
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'account.password_reset' \
         AND (after->>'sessions_ended')::int = 2 AND (after->>'tokens_revoked')::int = 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows, 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM password_resets")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_newer_link_replaces_the_older_one_and_a_link_past_its_time_is_refused() {
    let (app, sink) = app_with_mailbox().await;
    let mut ann = app.browser("127.0.0.41");
    assert_eq!(ann.signup("ann@example.com", PASSWORD).await.status, 303);
    let mut visitor = app.browser("127.0.0.42");

    assert_eq!(ask(&mut visitor, "ann@example.com").await.status, 303);
    let first = link_path(&sink.next(MAIL_WAIT).await.unwrap());
    assert_eq!(ask(&mut visitor, "ann@example.com").await.status, 303);
    let second = link_path(&sink.next(MAIL_WAIT).await.unwrap());
    assert_ne!(first, second);
    assert_eq!(visitor.get(&first).await.status, 410, "replaced");
    assert_eq!(visitor.get(&second).await.status, 200);

    sqlx::query("UPDATE password_resets SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let expired = visitor.get(&second).await;
    assert_eq!(expired.status, 410);
    assert!(expired.body.contains("Ask for a new link"));
    let csrf = Browser::csrf_in(&visitor.get("/password/forgot").await.body);
    let refused = visitor
        .post(
            &second,
            &[
                ("csrf", &csrf),
                ("password", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status, 410);
    let mut again = app.browser("127.0.0.43");
    assert_eq!(
        again.login("ann@example.com", PASSWORD, "").await.status,
        303,
        "the password is unchanged"
    );

    // A new link lasts 30 minutes and works.
    assert_eq!(ask(&mut visitor, "ann@example.com").await.status, 303);
    let third = link_path(&sink.next(MAIL_WAIT).await.unwrap());
    let expiry_ok: bool = sqlx::query_scalar(
        "SELECT bool_and(expires_at BETWEEN now() + interval '29 minutes' \
         AND now() + interval '31 minutes') FROM password_resets",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(expiry_ok, "a link lasts 30 minutes");
    assert_eq!(
        choose(&mut visitor, &third, NEW_PASSWORD, NEW_PASSWORD)
            .await
            .status,
        303
    );
}

#[tokio::test]
async fn reset_requests_are_limited_per_email_and_per_address_whether_or_not_the_account_exists() {
    let (app, sink) = app_with_mailbox().await;
    let mut ann = app.browser("127.0.0.51");
    assert_eq!(ann.signup("ann@example.com", PASSWORD).await.status, 303);

    // Per email: three an hour, for an account's address and for an unknown one alike.
    for email in ["ann@example.com", "nobody@example.com"] {
        let mut from = app.browser("127.0.0.52");
        for _ in 0..3 {
            assert_eq!(ask(&mut from, email).await.status, 303, "{email}");
        }
        let mut elsewhere = app.browser("127.0.0.53");
        let limited = ask(&mut elsewhere, email).await;
        assert_eq!(limited.status, 429, "{email}");
        assert!(limited.retry_after.unwrap_or(0) > 0);
        assert!(limited.body.contains("Too many reset links were asked for"));
    }
    for _ in 0..3 {
        sink.next(MAIL_WAIT).await.unwrap();
    }
    assert!(!sink.anything_within(Duration::from_millis(500)).await);

    // Per address: ten an hour, whatever the emails.
    let mut flood = app.browser("127.0.0.54");
    for i in 0..10 {
        let page = ask(&mut flood, &format!("user{i}@example.com")).await;
        assert_eq!(page.status, 303);
    }
    let page = ask(&mut flood, "user10@example.com").await;
    assert_eq!(page.status, 429);
    assert!(page.body.contains("Too many reset links were asked for"));
}

#[tokio::test]
async fn the_forms_need_their_token_and_without_mail_the_answer_is_the_same() {
    let app = App::start(PUBLIC).await;
    let mut ann = app.browser("127.0.0.61");
    assert_eq!(ann.signup("ann@example.com", PASSWORD).await.status, 303);
    let mut visitor = app.browser("127.0.0.62");
    let page = visitor
        .post("/password/forgot", &[("email", "ann@example.com")])
        .await;
    assert_eq!(page.status, 403, "no CSRF token");
    let page = ask(&mut visitor, "ann@example.com").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/password/forgot/sent"))
    );
    let page = ask(&mut visitor, "not an address").await;
    assert_eq!(page.status, 422);
    assert!(page
        .body
        .contains("Enter the email address of your account"));
    let page = visitor.get("/password/reset/rp_0123456789abcdef").await;
    assert_eq!(page.status, 410);
    let login = visitor.get("/login").await;
    assert!(
        login.body.contains("href=\"/password/forgot\""),
        "the login page links to it"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM password_resets")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "without mail no link is made");
}
