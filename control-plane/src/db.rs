//! Postgres: connect (creating the database if it is missing), run the migrations in
//! `migrations/`, and seal any secret an older version left in plaintext.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Connects to `url`, creating its database first if needed, migrates, and seals secrets at
/// rest ([`crate::secret_store::seal_at_rest`]): what the server does at start-up.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?;
    create_if_missing(&options).await?;
    let pool = pool(options).await?;
    sqlx::migrate!("../migrations").run(&pool).await?;
    crate::secret_store::seal_at_rest(&pool).await?;
    Ok(pool)
}

/// Connects to an existing database and migrates it, touching no secret (and needing no
/// secret key): what operator commands use.
pub async fn connect_existing(url: &str) -> anyhow::Result<PgPool> {
    let pool = pool(PgConnectOptions::from_str(url)?).await?;
    sqlx::migrate!("../migrations").run(&pool).await?;
    Ok(pool)
}

async fn pool(options: PgConnectOptions) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options)
        .await?)
}

async fn create_if_missing(options: &PgConnectOptions) -> anyhow::Result<()> {
    let database = options.get_database().unwrap_or("postgres").to_owned();
    if let Err(e) = options.connect().await {
        let missing = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "3D000");
        if !missing {
            return Err(e.into());
        }
        let mut admin = options.clone().database("postgres").connect().await?;
        let quoted = format!("\"{}\"", database.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        tracing::info!(%database, "created database");
    }
    Ok(())
}
