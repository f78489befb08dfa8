//! `TestDatabase`: a fresh, uniquely named Postgres database for one test, dropped afterwards.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::Url;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use crate::cleanup::run_in_drop;
use crate::paths;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DROP_TIMEOUT: Duration = Duration::from_secs(15);

/// A database named `rotor_test_<uuid>` on the server of `DATABASE_URL`, created empty.
///
/// Dropping it drops the database (`DROP DATABASE … WITH (FORCE)`, which also ends any
/// connection a spawned process still holds). The drop blocks for at most ~15 s and reports
/// failures on stderr instead of panicking.
pub struct TestDatabase {
    name: String,
    url: String,
    server: PgConnectOptions,
    pool: PgPool,
}

impl TestDatabase {
    /// Creates a fresh database on the server of `DATABASE_URL` (default
    /// [`paths::DEFAULT_DATABASE_URL`]).
    pub async fn create() -> Result<Self> {
        Self::create_on(&paths::database_url()).await
    }

    /// Creates a fresh database on the server `server_url` points to (its database part is
    /// only used to connect for the `CREATE DATABASE`).
    pub async fn create_on(server_url: &str) -> Result<Self> {
        let where_ = redact(server_url);
        let server = PgConnectOptions::from_str(server_url)
            .with_context(|| format!("parsing the Postgres URL {where_}"))?
            .disable_statement_logging();
        let name = format!("rotor_test_{}", Uuid::new_v4().simple());

        let mut admin = connect(&server, &where_).await?;
        let created = admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .with_context(|| format!("creating database {name} on {where_}"));
        admin.close().await.ok();
        created?;

        let url = with_database(server_url, &name)?;
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(server.clone().database(&name))
            .await
            .with_context(|| format!("connecting to the new database {name} on {where_}"));
        let pool = match pool {
            Ok(pool) => pool,
            Err(error) => {
                drop_database(server, name);
                return Err(error);
            }
        };
        Ok(Self {
            name,
            url,
            server,
            pool,
        })
    }

    /// The database's name, `rotor_test_<32 hex digits>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for this database, to hand to a spawned process (e.g. as `DATABASE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A small connection pool (5 connections) to this database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_database(self.server.clone(), std::mem::take(&mut self.name));
    }
}

/// Drops database `name` on `server`, from any context, bounded by [`DROP_TIMEOUT`].
fn drop_database(server: PgConnectOptions, name: String) {
    let what = format!("dropping test database {name}");
    run_in_drop(&what, DROP_TIMEOUT, move || async move {
        let mut admin = connect(&server, "the test Postgres server").await?;
        let dropped = admin
            .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
            .await;
        admin.close().await.ok();
        dropped?;
        Ok(())
    });
}

async fn connect(options: &PgConnectOptions, where_: &str) -> Result<PgConnection> {
    let hint = "is Postgres running? `scripts/ensure-services.sh` starts it";
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options))
        .await
        .with_context(|| format!("connecting to {where_} timed out ({hint})"))?
        .with_context(|| format!("connecting to {where_} ({hint})"))
}

/// `server_url` with its path (the database name) replaced by `name`.
fn with_database(server_url: &str, name: &str) -> Result<String> {
    let mut url = Url::parse(server_url)
        .with_context(|| format!("parsing the Postgres URL {}", redact(server_url)))?;
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password, which this one has.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.into()
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}
