//! Creates a PostgreSQL consumer's outbox in the customer's own database (`POST
//! /v1/projects/{id}/consumers/{name}/outbox`): the table the data plane's outbox consumer reads
//! (`id BIGSERIAL, method TEXT, payload JSONB, partition INTEGER, created_at TIMESTAMPTZ`), an
//! index on `(partition, id)` for its per-partition scans and, when the consumer has a
//! `partition_notification_channel`, a trigger that `pg_notify`s the new row's partition on it.
//! Everything is `IF NOT EXISTS` or replaced in one transaction, so asking twice is harmless.
//!
//! The DSN is the customer's, so the connection follows the rule their consumers follow
//! ([`rotor_tenant_config::consumer_egress`]): public addresses on the consumer ports only,
//! resolved once and pinned (unless the operator allows private egress,
//! `ROTOR_TENANT_PRIVATE_EGRESS`), and never the service's own database or Redis — not even
//! when public, not even with private egress allowed.
//!
//! The checks run here; the connection and the statements run in a child process held to a
//! memory limit and a deadline ([`super::isolated`]), because the server on the other end is
//! the customer's and may answer anything. An account has [`PER_ACCOUNT`] provisionings in
//! flight at most and the box [`BOX_WIDE`], so one account's slow server cannot hold up
//! another's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use rotor_tenant_config::consumer_egress::{self, PinError};
use rotor_tenant_config::PostgresConsumer;
use sqlx::postgres::PgConnectOptions;

use super::isolated::{self, Job};
use crate::probe::Rule;

/// Longest the connection and the statements may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Provisionings in flight at once for one account.
pub const PER_ACCOUNT: usize = 2;

/// Provisionings in flight at once on this control plane, all accounts together.
pub const BOX_WIDE: usize = 8;

static BOX_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BOX_WIDE);

/// Provisionings in flight per account (an account with none has no entry).
static ACCOUNT_SLOTS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

/// A provisioning's place among those in flight, given back when dropped.
struct Slot {
    account: String,
    _box: tokio::sync::SemaphorePermit<'static>,
}

impl Slot {
    /// A place for `account`, if it and the box have one free.
    fn take(account: &str) -> Option<Slot> {
        let permit = BOX_SLOTS.try_acquire().ok()?;
        let mut slots = ACCOUNT_SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        let held = slots.entry(account.to_owned()).or_default();
        if *held >= PER_ACCOUNT {
            return None;
        }
        *held += 1;
        Some(Slot {
            account: account.to_owned(),
            _box: permit,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = ACCOUNT_SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = slots.get_mut(&self.account) {
            *held -= 1;
            if *held == 0 {
                slots.remove(&self.account);
            }
        }
    }
}

/// Why the outbox was not created.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{0}")]
    Dsn(String),
    #[error("{0}")]
    Refused(PinError),
    #[error("the database server did not answer: {0}")]
    Unreachable(String),
    #[error("the database refused the login (check the user and password in the DSN): {0}")]
    AuthFailed(String),
    #[error("the database refused to create the outbox: {0}")]
    Sql(String),
    #[error("no answer from the database within {} s", WAIT.as_secs())]
    Timeout,
    #[error("too many outboxes are being created right now; try again in a few seconds")]
    Busy,
    /// The process that talked to the database ended without an answer (its memory limit, or
    /// a reply the client could not handle): the server's answers were not PostgreSQL's.
    #[error("the database server's answer could not be read as PostgreSQL's (worker {0})")]
    Malformed(String),
    /// The process that talks to the database could not be run.
    #[error("the outbox could not be created: {0}")]
    Worker(String),
}

/// What was made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Provisioned {
    pub table: String,
    /// Whether the table is new (it was absent before).
    pub created: bool,
    /// The channel the trigger notifies, when there is one.
    pub notification_channel: Option<String>,
}

/// A plain SQL identifier, optionally schema-qualified (as the data plane checks at load).
fn valid_table(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| valid_identifier(p))
}

fn valid_identifier(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 48
        && !p.as_bytes()[0].is_ascii_digit()
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The statements that make `config`'s outbox (the table name and channel checked first).
pub fn statements(config: &PostgresConsumer) -> Result<Vec<String>, OutboxError> {
    let table = &config.outbox_table_name;
    if !valid_table(table) {
        return Err(OutboxError::Dsn(
            "outbox_table_name must be a table name ([schema.]name of letters, digits and _)"
                .into(),
        ));
    }
    let channel = &config.partition_notification_channel;
    if !channel.is_empty() && !valid_identifier(channel) {
        return Err(OutboxError::Dsn(
            "partition_notification_channel must be letters, digits and _ for the trigger Rotor creates".into(),
        ));
    }
    let (schema, base) = match table.split_once('.') {
        Some((schema, base)) => (format!("{schema}."), base),
        None => (String::new(), table.as_str()),
    };
    let mut out = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (id BIGSERIAL PRIMARY KEY, method TEXT NOT NULL, \
             payload JSONB NOT NULL, partition INTEGER NOT NULL DEFAULT 0, \
             created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
        format!("CREATE INDEX IF NOT EXISTS {base}_partition_id_idx ON {table} (partition, id)"),
    ];
    if !channel.is_empty() {
        out.push(format!(
            "CREATE OR REPLACE FUNCTION {schema}{base}_notify() RETURNS trigger LANGUAGE plpgsql AS \
             $rotor$ BEGIN PERFORM pg_notify('{channel}', NEW.partition::text); RETURN NEW; END $rotor$"
        ));
        out.push(format!("DROP TRIGGER IF EXISTS {base}_notify ON {table}"));
        out.push(format!(
            "CREATE TRIGGER {base}_notify AFTER INSERT ON {table} FOR EACH ROW \
             EXECUTE FUNCTION {schema}{base}_notify()"
        ));
    }
    Ok(out)
}

/// The options to connect with: the DSN's, with the host replaced by the one checked address.
/// `service` are the service's own database addresses.
pub async fn pinned_options(
    dsn: &str,
    rule: Rule,
    service: &[SocketAddr],
) -> Result<PgConnectOptions, OutboxError> {
    // Private egress relaxes the address rule only: sockets, files and the rest stay refused.
    if let Some(why) = consumer_egress::hosted_dsn_refusal(dsn) {
        return Err(OutboxError::Dsn(why.into()));
    }
    let options = PgConnectOptions::from_str(dsn).map_err(|e| OutboxError::Dsn(e.to_string()))?;
    if options.get_socket().is_some() {
        return Err(OutboxError::Dsn(consumer_egress::SOCKET_REFUSED.into()));
    }
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    let addr = match rule {
        Rule::PublicOnly => {
            consumer_egress::pin(&host, port, consumer_egress::consumer_ports(), service)
                .await
                .map_err(OutboxError::Refused)?
        }
        Rule::Any => consumer_egress::pin_private(&host, port, service)
            .await
            .map_err(|e| match e {
                PinError::Resolve { reason, .. } => OutboxError::Unreachable(reason),
                refused => OutboxError::Refused(refused),
            })?,
    };
    let mut options = options.host(&addr.ip().to_string()).port(addr.port());
    if blank_password(dsn)? {
        options = options.password("");
    }
    Ok(options)
}

/// Creates `config`'s outbox in the database its DSN names, for `account` (its provisionings
/// in flight are bounded apart from other accounts').
pub async fn provision(
    config: &PostgresConsumer,
    rule: Rule,
    service: &[SocketAddr],
    account: &str,
) -> Result<Provisioned, OutboxError> {
    let statements = statements(config)?;
    let Some(_slot) = Slot::take(account) else {
        return Err(OutboxError::Busy);
    };
    let options = pinned_options(&config.dsn, rule, service).await?;
    let job = Job {
        dsn: config.dsn.clone(),
        host: options.get_host().to_owned(),
        port: options.get_port(),
        blank_password: blank_password(&config.dsn)?,
        table: config.outbox_table_name.clone(),
        statements,
    };
    let created = isolated::run(&job).await?;
    Ok(Provisioned {
        table: config.outbox_table_name.clone(),
        created,
        notification_channel: Some(config.partition_notification_channel.clone())
            .filter(|c| !c.is_empty()),
    })
}

/// Whether `dsn` has no password (then an empty one is sent: never one from a file of the
/// control plane's box).
fn blank_password(dsn: &str) -> Result<bool, OutboxError> {
    let url = url::Url::parse(dsn).map_err(|e| OutboxError::Dsn(e.to_string()))?;
    Ok(url.password().is_none() && !url.query_pairs().any(|(k, _)| k == "password"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(table: &str, channel: &str) -> PostgresConsumer {
        PostgresConsumer {
            dsn: "postgresql://app:pw@db.example.com/app".into(),
            outbox_table_name: table.into(),
            partition_notification_channel: channel.into(),
            ..PostgresConsumer::default()
        }
    }

    #[test]
    fn the_outbox_statements_take_only_plain_identifiers() {
        let s = statements(&consumer("app.outbox", "outbox_change")).unwrap();
        assert!(s[0].starts_with("CREATE TABLE IF NOT EXISTS app.outbox "));
        assert!(s[1].contains("outbox_partition_id_idx ON app.outbox (partition, id)"));
        assert!(s[2].contains("FUNCTION app.outbox_notify()"));
        assert!(s[2].contains("pg_notify('outbox_change', NEW.partition::text)"));
        assert_eq!(statements(&consumer("outbox", "")).unwrap().len(), 2);
        for (table, channel) in [
            ("outbox; DROP TABLE users", ""),
            ("a.b.c", ""),
            ("outbox", "x'); DROP TABLE users; --"),
            ("1outbox", ""),
        ] {
            assert!(
                statements(&consumer(table, channel)).is_err(),
                "{table} {channel}"
            );
        }
    }

    #[test]
    fn an_account_has_its_own_provisionings_in_flight() {
        let first: Vec<Slot> = (0..PER_ACCOUNT)
            .map(|_| Slot::take("acc_slots_a").expect("a free slot"))
            .collect();
        assert!(
            Slot::take("acc_slots_a").is_none(),
            "the account's are taken"
        );
        let other = Slot::take("acc_slots_b");
        assert!(other.is_some(), "another account still has its own");
        drop(first);
        assert!(Slot::take("acc_slots_a").is_some(), "given back when done");
    }

    #[tokio::test]
    async fn private_and_service_addresses_are_refused_before_any_connection() {
        let service: Vec<SocketAddr> = vec!["127.0.0.1:5432".parse().unwrap()];
        for dsn in [
            "postgresql://app:pw@127.0.0.1:5433/app",
            "postgresql://app:pw@localhost:5433/app",
            "postgresql://app:pw@10.0.0.8/app",
        ] {
            let e = pinned_options(dsn, Rule::PublicOnly, &service)
                .await
                .unwrap_err();
            assert!(
                matches!(e, OutboxError::Refused(PinError::Refused(_))),
                "{dsn}: {e}"
            );
        }
        // With private egress allowed, the service's own database is still refused.
        let e = pinned_options(
            "postgresql://app:pw@127.0.0.1:5432/app",
            Rule::Any,
            &service,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, OutboxError::Refused(PinError::ServiceAddress)),
            "{e}"
        );
        let ok = pinned_options(
            "postgresql://app:pw@127.0.0.1:5433/app",
            Rule::Any,
            &service,
        )
        .await
        .unwrap();
        assert_eq!((ok.get_host(), ok.get_port()), ("127.0.0.1", 5433));
        let e = pinned_options(
            "postgresql:///app?host=/run/postgresql",
            Rule::Any,
            &service,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, OutboxError::Dsn(_)), "{e}");
        // Nor in an IPv4-mapped IPv6 form.
        let e = pinned_options(
            "postgresql://app:pw@[::ffff:127.0.0.1]:5432/app",
            Rule::Any,
            &service,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, OutboxError::Refused(PinError::ServiceAddress)),
            "{e}"
        );
    }
}
