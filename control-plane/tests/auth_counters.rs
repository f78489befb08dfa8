//! The login and sign-up counters live in Postgres: a restarted control plane keeps refusing
//! what the old one refused, two control planes over one database share one budget (also for
//! parallel guesses spread over both), emails are stored only as digests, the counters are
//! bounded, and without the database nothing is admitted.

mod auth;
mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use auth::*;
use rotor_control_plane::auth_limits::{
    AuthLimits, LimitError, LOGIN_FAILURES_PER_ADDRESS, LOGIN_FAILURES_PER_EMAIL, LOGIN_WINDOW,
    SIGNUPS_PER_ADDRESS,
};
use rotor_control_plane::settings::Settings;
use rotor_control_plane::state::AppState;

/// Another control-plane process over `app`'s database: its own pool and its own app state
/// (what a restart, or a second process behind a load balancer, starts with). Returns its
/// base URL.
async fn another_control_plane(app: &App) -> String {
    let pool = rotor_control_plane::db::connect_and_migrate(app._db.url())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut settings = Settings::from_env();
    settings.public_url = "https://rotor.example".into();
    let public = rotor_control_plane::app::public_app(AppState::new(pool, Arc::new(settings)));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            public.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

async fn guess(
    app: &App,
    base: &str,
    from: &str,
    email: &str,
    password: &str,
) -> (u16, Option<u64>) {
    let (s, retry_after, _) = call(
        &app.client(from),
        base,
        "POST",
        "/v1/tokens",
        None,
        Some(credentials(email, password)),
    )
    .await;
    (s, retry_after)
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn wait_of(r: Result<impl Sized, LimitError>) -> Duration {
    match r {
        Err(LimitError::Wait(wait)) => wait,
        Err(e) => panic!("not a wait: {e}"),
        Ok(_) => panic!("admitted"),
    }
}

#[tokio::test]
async fn a_restarted_control_plane_keeps_refusing_what_the_old_one_refused() {
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
    for n in 0..LOGIN_FAILURES_PER_EMAIL {
        let (s, _) = guess(
            &app,
            &app.base,
            "127.0.0.2",
            "alice@example.com",
            &format!("guess {n}"),
        )
        .await;
        assert_eq!(s, 401);
    }
    for n in 1..SIGNUPS_PER_ADDRESS {
        let (s, _, b) = app
            .call(
                "127.0.0.1",
                "POST",
                "/v1/signup",
                None,
                Some(credentials(&format!("bot{n}@example.com"), PASSWORD)),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    // A new process over the same database (nothing in memory) refuses even the right
    // password, with the rest of the window as Retry-After, and the eleventh sign-up.
    let restarted = another_control_plane(&app).await;
    let (s, retry_after) =
        guess(&app, &restarted, "127.0.0.3", "alice@example.com", PASSWORD).await;
    assert_eq!(s, 429);
    let wait = retry_after.expect("Retry-After");
    assert!(wait > 60 && wait <= LOGIN_WINDOW.as_secs(), "{wait}");
    let (s, retry_after, b) = call(
        &app.client("127.0.0.1"),
        &restarted,
        "POST",
        "/v1/signup",
        None,
        Some(credentials("bot-after-restart@example.com", PASSWORD)),
    )
    .await;
    assert_eq!((s, retry_after.is_some()), (429, true), "{b}");
    // Once the window ends (moved, as time passing would), the right password works again.
    // (Asked of the first process: the restarted one remembers its refusal in memory until
    // the window's real end, which moving it in the database does not change.)
    sqlx::query("UPDATE auth_counters SET window_ends = now() WHERE kind = 'login'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (s, _) = guess(&app, &app.base, "127.0.0.3", "alice@example.com", PASSWORD).await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn two_control_planes_over_one_database_share_one_budget() {
    let app = App::start("https://rotor.example").await;
    let other = another_control_plane(&app).await;
    app.call(
        "127.0.0.1",
        "POST",
        "/v1/signup",
        None,
        Some(credentials("alice@example.com", PASSWORD)),
    )
    .await;
    // Three guesses on one, two on the other: the email's five are spent on both.
    for (n, base) in [&app.base, &app.base, &app.base, &other, &other]
        .into_iter()
        .enumerate()
    {
        let (s, _) = guess(
            &app,
            base,
            "127.0.0.2",
            "alice@example.com",
            &format!("guess {n}"),
        )
        .await;
        assert_eq!(s, 401, "guess {n}");
    }
    for base in [&app.base, &other] {
        let (s, retry_after) = guess(&app, base, "127.0.0.4", "alice@example.com", PASSWORD).await;
        assert_eq!((s, retry_after.is_some()), (429, true));
    }
    // Parallel guesses spread over both processes cannot race past the limit either.
    let guesses = (0..30).map(|n| {
        let base = if n % 2 == 0 {
            app.base.clone()
        } else {
            other.clone()
        };
        let app = &app;
        async move {
            guess(
                app,
                &base,
                "127.0.0.5",
                "bob@example.com",
                &format!("parallel {n}"),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers.iter().filter(|(s, _)| *s == 401).count();
    let limited = answers.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!((checked, limited), (5, 25), "{answers:?}");
    // One address: its twenty failures are counted by both processes together.
    // (127.0.0.5 has five failures already: the five checked guesses above.)
    for n in LOGIN_FAILURES_PER_EMAIL..LOGIN_FAILURES_PER_ADDRESS {
        let base = if n % 2 == 0 { &app.base } else { &other };
        let (s, _) = guess(
            &app,
            base,
            "127.0.0.5",
            &format!("user{n}@example.com"),
            "wrong",
        )
        .await;
        assert_eq!(s, 401, "guess {n}");
    }
    for base in [&app.base, &other] {
        let (s, _) = guess(&app, base, "127.0.0.5", "fresh@example.com", "wrong").await;
        assert_eq!(s, 429);
    }
}

#[tokio::test]
async fn emails_are_counted_as_digests_and_a_success_forgets_them() {
    let app = App::start("https://rotor.example").await;
    let limits = AuthLimits::new(app.pool.clone());
    for _ in 0..LOGIN_FAILURES_PER_EMAIL - 1 {
        limits
            .begin_login("Alice@Example.com", ip("10.0.0.1"))
            .await
            .unwrap()
            .failed();
    }
    let keys: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT kind, key, count FROM auth_counters ORDER BY key")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let digest = rotor_control_plane::secrets::sha256_hex("alice@example.com");
    assert_eq!(
        keys,
        [
            ("login".to_owned(), format!("email:{digest}"), 4),
            ("login".to_owned(), "ip:10.0.0.1".to_owned(), 4),
        ]
    );
    // A success forgets the email's failures and is not counted against the address; an
    // attempt that could not be checked is taken back.
    limits
        .begin_login("alice@example.com", ip("10.0.0.1"))
        .await
        .unwrap()
        .succeeded()
        .await;
    for _ in 0..LOGIN_FAILURES_PER_EMAIL - 1 {
        limits
            .begin_login("alice@example.com", ip("10.0.0.1"))
            .await
            .unwrap()
            .failed();
    }
    limits
        .begin_login("alice@example.com", ip("10.0.0.1"))
        .await
        .unwrap()
        .not_counted()
        .await;
    limits
        .begin_login("alice@example.com", ip("10.0.0.1"))
        .await
        .unwrap()
        .failed();
    let wait = wait_of(
        limits
            .begin_login("alice@example.com", ip("10.0.0.9"))
            .await,
    );
    assert!(
        wait > Duration::from_secs(60) && wait <= LOGIN_WINDOW,
        "{wait:?}"
    );
    let count: i32 =
        sqlx::query_scalar("SELECT count FROM auth_counters WHERE key = 'ip:10.0.0.1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        count, 9,
        "4 + 4 + 1 failures; the success and the take-back are not counted"
    );
}

#[tokio::test]
async fn addresses_count_ipv6_by_slash_64_and_sign_ups_only_with_a_known_address() {
    let app = App::start("https://rotor.example").await;
    let limits = AuthLimits::new(app.pool.clone());
    for n in 0..LOGIN_FAILURES_PER_ADDRESS {
        limits
            .begin_login(&format!("user{n}@x.io"), ip("2001:db8::1"))
            .await
            .unwrap()
            .failed();
    }
    wait_of(limits.begin_login("fresh@x.io", ip("2001:db8::ffff")).await);
    limits
        .begin_login("fresh@x.io", ip("2001:db8:0:1::1"))
        .await
        .unwrap()
        .failed();
    limits
        .begin_login("fresh@x.io", None)
        .await
        .unwrap()
        .failed();
    for _ in 0..SIGNUPS_PER_ADDRESS {
        limits.begin_signup(ip("10.1.0.1")).await.unwrap();
    }
    wait_of(limits.begin_signup(ip("10.1.0.1")).await);
    wait_of(limits.begin_signup(ip("::ffff:10.1.0.1")).await);
    limits.begin_signup(ip("10.1.0.2")).await.unwrap();
    limits.begin_signup(None).await.unwrap();
}

#[tokio::test]
async fn full_counters_make_new_keys_wait_keep_counting_known_ones_and_are_swept() {
    let app = App::start("https://rotor.example").await;
    let limits = AuthLimits::with_capacity(app.pool.clone(), 3);
    // Counted now, so no background sweep recounts the rows while they are being inserted
    // (a recount racing an insert counts it twice until the next sweep).
    assert_eq!(limits.sweep().await.unwrap(), 0);
    for n in 1..=3 {
        limits
            .begin_signup(ip(&format!("10.2.0.{n}")))
            .await
            .unwrap();
    }
    assert_eq!(limits.sweep().await.unwrap(), 0);
    assert_eq!(
        wait_of(limits.begin_signup(ip("10.2.0.4")).await),
        Duration::from_secs(1)
    );
    limits.begin_signup(ip("10.2.0.1")).await.unwrap();
    // Once the windows end, the sweep deletes them and room comes back.
    sqlx::query("UPDATE auth_counters SET window_ends = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(limits.sweep().await.unwrap(), 3);
    limits.begin_signup(ip("10.2.0.4")).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_counters")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn without_the_database_logins_and_sign_ups_are_refused_with_503() {
    let app = App::start("https://rotor.example").await;
    let limits = AuthLimits::new(app.pool.clone());
    // The app's pool is the one its state uses: closing it is Postgres going away.
    app.pool.close().await;
    assert!(matches!(
        limits
            .begin_login("alice@example.com", ip("10.0.0.1"))
            .await,
        Err(LimitError::Db(_))
    ));
    let (s, retry_after, body) = app
        .call(
            "127.0.0.1",
            "POST",
            "/v1/tokens",
            None,
            Some(credentials("alice@example.com", PASSWORD)),
        )
        .await;
    assert_eq!((s, retry_after), (503, Some(1)), "{body}");
    assert_eq!(body["error"]["code"], "busy");
    let (s, _, _) = app
        .call(
            "127.0.0.1",
            "POST",
            "/v1/signup",
            None,
            Some(credentials("bob@example.com", PASSWORD)),
        )
        .await;
    assert_eq!(s, 503);
    let page = app
        .browser("127.0.0.1")
        .login("alice@example.com", PASSWORD, "")
        .await;
    assert_eq!(page.status, 503);
}

#[tokio::test]
async fn parallel_first_attempts_on_new_keys_admit_exactly_the_limit_across_processes() {
    let app = App::start("https://rotor.example").await;
    let other_pool = rotor_control_plane::db::connect_and_migrate(app._db.url())
        .await
        .unwrap();
    let (a, b) = (
        AuthLimits::new(app.pool.clone()),
        AuthLimits::new(other_pool),
    );
    for round in 0..5 {
        // A new email from a new address, and a new email alone: no row exists yet.
        for address in [ip(&format!("10.9.0.{round}")), None] {
            let email = format!("race{round}-{}@x.io", address.is_some());
            let attempts = (0..40).map(|n| {
                let limits = if n % 2 == 0 { &a } else { &b };
                let email = email.clone();
                async move {
                    match limits.begin_login(&email, address).await {
                        Ok(attempt) => {
                            attempt.failed();
                            true
                        }
                        Err(LimitError::Wait(_)) => false,
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            let admitted = futures_util::future::join_all(attempts)
                .await
                .into_iter()
                .filter(|ok| *ok)
                .count();
            assert_eq!(admitted, LOGIN_FAILURES_PER_EMAIL as usize, "round {round}");
        }
    }
    // The address was counted once per admitted attempt, never for a refused one.
    let count: i32 =
        sqlx::query_scalar("SELECT count FROM auth_counters WHERE key = 'ip:10.9.0.0'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(count, LOGIN_FAILURES_PER_EMAIL as i32);
}
