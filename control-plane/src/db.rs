//! Postgres: connect (creating the database if it is missing) and run the migrations in
//! `migrations/`.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Connects to `url`, creating its database first if needed, then migrates.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?;
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
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options)
        .await?;
    sqlx::migrate!("../migrations").run(&pool).await?;
    Ok(pool)
}
