//! Attacks on password checking, performed against the real HTTP app and shown to fail:
//! password floods that would stall the runtime, brute force on the REST API and the dashboard
//! (one shared limit per email and per address), and mass sign-ups from one address.

mod auth;
mod common;

use std::time::Duration;

use auth::*;
use common::Api;

// ---------------------------------------------------------------------------------------------
// 1. Password hashing cannot stall the runtime.

/// This test's runtime has one thread, shared by the app and the client: if argon2 ran on it,
/// a password check would hold up every other request until it was done.
#[tokio::test(flavor = "current_thread")]
async fn a_password_check_in_progress_does_not_stall_other_requests_on_the_runtime() {
    let api = Api::start().await;
    api.account("slow@example.com").await;
    // A stored hash with twenty times the usual cost, so that one check lasts a while.
    sqlx::query("UPDATE accounts SET password_hash = $1")
        .bind("$argon2id$v=19$m=19456,t=40,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .execute(&api.pool)
        .await
        .unwrap();
    let (base, http) = (
        api.base.clone(),
        reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    );
    let login = tokio::spawn({
        let http = http.clone();
        let base = base.clone();
        async move {
            call(
                &http,
                &base,
                "POST",
                "/v1/tokens",
                None,
                Some(credentials("slow@example.com", "wrong guess")),
            )
            .await
        }
    });
    tokio::time::timeout(WAIT, async {
        while rotor_control_plane::secrets::password_work_running() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the password check starts (and leaves the runtime free to notice)");
    let health = tokio::time::timeout(
        Duration::from_secs(2),
        http.get(format!("{base}/health")).send(),
    )
    .await
    .expect("/health answers while a password is being checked")
    .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(
        rotor_control_plane::secrets::password_work_running() >= 1,
        "the check was still running"
    );
    let (s, _, _) = tokio::time::timeout(Duration::from_secs(120), login)
        .await
        .expect("the slow check ends")
        .unwrap();
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_flood_beyond_the_hashing_queue_is_told_to_come_back_instead_of_piling_up() {
    let api = Api::start().await;
    let answers = tokio::time::timeout(Duration::from_secs(120), flood(&api, 200))
        .await
        .expect("the flood is answered")
        .unwrap();
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(!busy.is_empty(), "some requests are refused as busy");
    for (_, retry_after, body) in &busy {
        assert_eq!(*retry_after, Some(1));
        assert_eq!(body["error"]["code"], "busy", "{body}");
    }
    assert!(
        answers.iter().any(|(s, _, _)| *s == 401),
        "the queued ones are checked"
    );
    assert!(answers.iter().all(|(s, _, _)| *s == 401 || *s == 503));
    // And the service is fine afterwards.
    let token = api.account("after@example.com").await;
    assert!(token.starts_with("rtr_"));
}

#[tokio::test]
async fn password_checks_beyond_the_box_wide_rate_are_told_to_come_back() {
    let api = Api::start().await;
    // Every guess from a new address and for a new email: only the box-wide rate applies.
    rotor_control_plane::secrets::set_password_checks_per_second(3);
    let answers = tokio::time::timeout(Duration::from_secs(60), flood(&api, 12))
        .await
        .expect("the flood is answered")
        .unwrap();
    let checked = answers.iter().filter(|(s, _, _)| *s == 401).count();
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(checked >= 1, "the rate admits some: {answers:?}");
    assert!(
        checked <= 4,
        "at most a second's worth (and a refill) is checked: {answers:?}"
    );
    assert_eq!(checked + busy.len(), 12, "{answers:?}");
    for (_, retry_after, body) in busy {
        assert_eq!(*retry_after, Some(1));
        assert_eq!(body["error"]["code"], "busy", "{body}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Login and sign-up limits, the same on every surface.

#[tokio::test]
async fn forty_wrong_passwords_on_the_token_endpoint_are_cut_off_after_five_with_retry_after() {
    let app = App::start("https://rotor.example").await;
    let (s, _, _) = app
        .call(
            "127.0.0.1",
            "POST",
            "/v1/signup",
            None,
            Some(credentials("alice@example.com", PASSWORD)),
        )
        .await;
    assert_eq!(s, 201);
    let mut limited = Vec::new();
    for n in 1..=40 {
        let (s, retry_after, body) = app
            .call(
                "127.0.0.1",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials(
                    "alice@example.com",
                    &format!("guess number {n}"),
                )),
            )
            .await;
        if n <= 5 {
            assert_eq!(s, 401, "guess {n}: {body}");
        } else {
            assert_eq!(s, 429, "guess {n}: {body}");
            let wait = retry_after.expect("a Retry-After header");
            assert!((1..=15 * 60).contains(&wait), "{wait}");
            assert_eq!(body["error"]["code"], "rate_limited");
            limited.push(body);
        }
    }
    // Even the right password waits now, from another address too (the limit is per email).
    let (s, retry_after, right) = app
        .call(
            "127.0.0.2",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials("alice@example.com", PASSWORD)),
        )
        .await;
    assert_eq!((s, retry_after.is_some()), (429, true), "{right}");
    // An unknown email is limited the same way, with the same answer.
    for n in 1..=6 {
        let (s, _, body) = app
            .call(
                "127.0.0.3",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials("nobody@example.com", &format!("guess {n}"))),
            )
            .await;
        assert_eq!(s, if n <= 5 { 401 } else { 429 });
        if n == 6 {
            assert_eq!(body, limited[0]);
        }
    }
}

#[tokio::test]
async fn parallel_guesses_cannot_race_past_the_limit() {
    let app = App::start("https://rotor.example").await;
    app.call(
        "127.0.0.1",
        "POST",
        "/v1/signup",
        None,
        Some(credentials("alice@example.com", PASSWORD)),
    )
    .await;
    let guesses = (0..30).map(|n| {
        app.call(
            "127.0.0.1",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials(
                "alice@example.com",
                &format!("parallel guess {n}"),
            )),
        )
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers.iter().filter(|(s, _, _)| *s == 401).count();
    let limited = answers.iter().filter(|(s, _, _)| *s == 429).count();
    // On a loaded box the password-hashing pool may answer some of the five admitted guesses
    // 503 (busy, try again): they spent a try without being checked. Never more than five get
    // past the limit, whatever the timing.
    let busy = answers.iter().filter(|(s, _, _)| *s == 503).count();
    assert_eq!((checked + busy, limited), (5, 25), "{answers:?}");
}

#[tokio::test]
async fn the_dashboard_and_the_api_share_one_failure_count_per_email_and_per_address() {
    let app = App::start("https://rotor.example").await;
    app.call(
        "127.0.0.1",
        "POST",
        "/v1/signup",
        None,
        Some(credentials("alice@example.com", PASSWORD)),
    )
    .await;
    // Three wrong guesses on the API and two on the dashboard...
    for n in 0..3 {
        let (s, _, _) = app
            .call(
                "127.0.0.2",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials("alice@example.com", &format!("api guess {n}"))),
            )
            .await;
        assert_eq!(s, 401);
    }
    let mut mallory = app.browser("127.0.0.3");
    for n in 0..2 {
        let page = mallory
            .login("alice@example.com", &format!("form guess {n}"), "")
            .await;
        assert_eq!(page.status, 401);
        assert!(page.body.contains("Wrong email or password."));
    }
    // ...and both surfaces refuse, with Retry-After, even the right password.
    let page = mallory.login("alice@example.com", PASSWORD, "").await;
    assert_eq!(page.status, 429);
    assert!(page.body.contains("Too many failed attempts"));
    assert!(page.retry_after.is_some_and(|s| (1..=900).contains(&s)));
    let (s, retry_after, _) = app
        .call(
            "127.0.0.4",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials("alice@example.com", PASSWORD)),
        )
        .await;
    assert_eq!((s, retry_after.is_some()), (429, true));

    // One address guessing many emails: twenty failures on the API, then the dashboard
    // refuses that address for any email, while another address still gets an answer.
    for n in 0..20 {
        let (s, _, _) = app
            .call(
                "127.0.0.5",
                "POST",
                "/v1/tokens",
                None,
                Some(credentials(&format!("user{n}@example.com"), "wrong guess")),
            )
            .await;
        assert_eq!(s, 401, "guess {n}");
    }
    let page = app
        .browser("127.0.0.5")
        .login("fresh@example.com", "wrong guess", "")
        .await;
    assert_eq!((page.status, page.retry_after.is_some()), (429, true));
    let page = app
        .browser("127.0.0.6")
        .login("fresh@example.com", "wrong guess", "")
        .await;
    assert_eq!(page.status, 401);
}

#[tokio::test]
async fn one_address_opening_eleven_accounts_is_refused_the_eleventh_on_both_surfaces() {
    let app = App::start("https://rotor.example").await;
    for n in 1..=10 {
        let (s, _, body) = app
            .call(
                "127.0.0.1",
                "POST",
                "/v1/signup",
                None,
                Some(credentials(&format!("bot{n}@example.com"), PASSWORD)),
            )
            .await;
        assert_eq!(s, 201, "sign-up {n}: {body}");
    }
    let (s, retry_after, body) = app
        .call(
            "127.0.0.1",
            "POST",
            "/v1/signup",
            None,
            Some(credentials("bot11@example.com", PASSWORD)),
        )
        .await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(retry_after.is_some_and(|s| (1..=3600).contains(&s)));
    let page = app
        .browser("127.0.0.1")
        .signup("bot12@example.com", PASSWORD)
        .await;
    assert_eq!(page.status, 429);
    assert!(page.retry_after.is_some());
    assert!(page.body.contains("Too many accounts"));
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE email IN ('bot11@example.com', 'bot12@example.com'))",
    )
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!exists, "neither refused account was created");
    // Another address is not affected.
    let page = app
        .browser("127.0.0.2")
        .signup("human@example.com", PASSWORD)
        .await;
    assert_eq!(page.status, 303);
}
