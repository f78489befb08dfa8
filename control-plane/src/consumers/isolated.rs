//! Runs an outbox provisioning's database work in a child process, never in the control plane:
//! the PostgreSQL server is the customer's, and sqlx believes the lengths a server announces (a
//! forged message length makes it reserve gigabytes before reading). The control-plane binary
//! runs itself again (`/proc/self/exe provision-outbox`, a hidden subcommand) with an empty
//! environment, its address space and data segment held to [`MEMORY_LIMIT`] and no core dump
//! (set by the parent on the child before the job is written, and by the child on itself
//! before it reads it), a
//! wall-clock deadline after which it is killed, and its answer read up to [`ANSWER_LIMIT`]
//! bytes. The job ([`Job`]) goes in as JSON on stdin; the answer ([`Answer`]) comes back as JSON
//! on stdout. A child that dies, overruns or answers nonsense is an [`OutboxError`] like any
//! other failed provisioning, and only that child pays for what the server sent.

use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use rustix::process::{Resource, Rlimit};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::outbox::{OutboxError, WAIT};

/// The hidden subcommand of the control-plane binary that runs one job.
pub const SUBCOMMAND: &str = "provision-outbox";

/// The child's address space and data segment (`RLIMIT_AS`, `RLIMIT_DATA`).
pub const MEMORY_LIMIT: u64 = 256 << 20;

/// The most of the child's answer that is read; a longer one is a failure.
pub const ANSWER_LIMIT: u64 = 64 << 10;

/// The most of a job the child reads.
const JOB_LIMIT: u64 = 1 << 20;

/// How long the child may run in all: the database work's own deadline plus its start-up.
const DEADLINE: Duration = Duration::from_secs(WAIT.as_secs() + 5);

/// One provisioning: where to connect (the DSN for its user, password, database and options;
/// the checked address to dial in its place) and what to run in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub dsn: String,
    /// The checked address's IP, dialled instead of the DSN's host.
    pub host: String,
    pub port: u16,
    /// Send an empty password (the DSN has none): never look for one on the box.
    pub blank_password: bool,
    /// The outbox table, to tell whether it existed before.
    pub table: String,
    pub statements: Vec<String>,
}

/// How a job ended, as the child writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Done; whether the table is new.
    Made {
        created: bool,
    },
    Unreachable(String),
    AuthFailed(String),
    Sql(String),
    Timeout,
    /// The job could not be read or its DSN parsed (a bug of the parent).
    BadJob(String),
}

impl Answer {
    fn into_result(self) -> Result<bool, OutboxError> {
        match self {
            Answer::Made { created } => Ok(created),
            Answer::Unreachable(m) => Err(OutboxError::Unreachable(m)),
            Answer::AuthFailed(m) => Err(OutboxError::AuthFailed(m)),
            Answer::Sql(m) => Err(OutboxError::Sql(m)),
            Answer::Timeout => Err(OutboxError::Timeout),
            Answer::BadJob(m) => Err(OutboxError::Worker(m)),
        }
    }
}

/// Runs `job` in a child process (see the module's doc); whether the table is new.
pub async fn run(job: &Job) -> Result<bool, OutboxError> {
    run_with(std::path::Path::new("/proc/self/exe"), job).await
}

async fn run_with(program: &std::path::Path, job: &Job) -> Result<bool, OutboxError> {
    let worker = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "outbox provisioning worker: {what}");
        OutboxError::Worker(format!("{what}: {e}"))
    };
    let input = serde_json::to_vec(job).map_err(|e| worker("the job", &e))?;
    let mut child = tokio::process::Command::new(program)
        .arg(SUBCOMMAND)
        .env_clear()
        // One malloc arena: the process has one thread, and every arena reserves address space.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| worker("start", &e))?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
        for (resource, limit) in limits() {
            rustix::process::prlimit(Some(pid), resource, limit)
                .map_err(|e| worker("limits", &e))?;
        }
    }
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| worker("stdin", &"absent"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| worker("stdout", &"absent"))?;
    let exchange = async {
        // A child that dies before reading its job closes the pipe: its status says why.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        let mut answer = Vec::new();
        let _ = stdout.take(ANSWER_LIMIT + 1).read_to_end(&mut answer).await;
        (answer, child.wait().await)
    };
    let Ok((answer, status)) = tokio::time::timeout(DEADLINE, exchange).await else {
        // `kill_on_drop` ends the child when `child` goes out of scope here.
        return Err(OutboxError::Timeout);
    };
    let status = status.map_err(|e| worker("wait", &e))?;
    if answer.len() as u64 > ANSWER_LIMIT {
        return Err(OutboxError::Worker(
            "the worker's answer is too long".into(),
        ));
    }
    match serde_json::from_slice::<Answer>(&answer) {
        Ok(answer) if status.success() => answer.into_result(),
        // It ended without a whole answer: the server's replies made it fail (a memory limit
        // hit, a panic on a malformed message).
        _ => Err(OutboxError::Malformed(status.to_string())),
    }
}

/// The child's limits: [`MEMORY_LIMIT`] on its address space and data segment, and no core
/// dump (its memory holds the customer's password).
fn limits() -> [(Resource, Rlimit); 3] {
    let at = |bytes: u64| Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    [
        (Resource::As, at(MEMORY_LIMIT)),
        (Resource::Data, at(MEMORY_LIMIT)),
        (Resource::Core, at(0)),
    ]
}

/// The child's side (`rotor-control-plane provision-outbox`): holds itself to the memory limit,
/// reads one [`Job`] from stdin, runs it and writes its [`Answer`] on stdout.
pub fn child_main() -> std::io::Result<()> {
    for (resource, limit) in limits() {
        rustix::process::setrlimit(resource, limit)?;
    }
    let mut input = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::io::stdin().lock(), JOB_LIMIT),
        &mut input,
    )?;
    let answer = match serde_json::from_slice::<Job>(&input) {
        Ok(job) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(work(&job)),
        Err(e) => Answer::BadJob(e.to_string()),
    };
    let out = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
    std::io::Write::write_all(&mut std::io::stdout().lock(), &out)
}

/// Connects to the job's checked address and runs its statements in one transaction.
async fn work(job: &Job) -> Answer {
    let options = match PgConnectOptions::from_str(&job.dsn) {
        Ok(options) => options.host(&job.host).port(job.port),
        Err(e) => return Answer::BadJob(e.to_string()),
    };
    let options = if job.blank_password {
        options.password("")
    } else {
        options
    };
    let transaction = async {
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(connect_error)?;
        let sql = |e: sqlx::Error| Answer::Sql(database_message(&e));
        let mut tx = conn.begin().await.map_err(sql)?;
        let existed: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&job.table)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql)?;
        for statement in &job.statements {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(sql)?;
        }
        tx.commit().await.map_err(sql)?;
        let _ = conn.close().await;
        Ok::<_, Answer>(Answer::Made { created: !existed })
    };
    match tokio::time::timeout(WAIT, transaction).await {
        Ok(Ok(made)) => made,
        Ok(Err(failed)) => failed,
        Err(_) => Answer::Timeout,
    }
}

/// The database's own message (never the DSN).
fn database_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

fn connect_error(e: sqlx::Error) -> Answer {
    if let Some(db) = e.as_database_error() {
        // 28P01 invalid_password, 28000 invalid_authorization_specification.
        if matches!(db.code().as_deref(), Some("28P01" | "28000")) {
            return Answer::AuthFailed(db.message().to_owned());
        }
        return Answer::Sql(db.message().to_owned());
    }
    Answer::Unreachable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_as_json_and_map_to_the_outbox_errors() {
        for answer in [
            Answer::Made { created: true },
            Answer::Sql("permission denied".into()),
            Answer::Timeout,
        ] {
            let text = serde_json::to_string(&answer).unwrap();
            assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), answer);
        }
        assert!(matches!(
            Answer::Made { created: false }.into_result(),
            Ok(false)
        ));
        assert!(matches!(
            Answer::AuthFailed("no".into()).into_result(),
            Err(OutboxError::AuthFailed(_))
        ));
    }

    #[tokio::test]
    async fn a_worker_that_dies_without_an_answer_is_a_malformed_reply() {
        let job = Job {
            dsn: "postgresql://u@127.0.0.1/db".into(),
            host: "127.0.0.1".into(),
            port: 1,
            blank_password: true,
            table: "outbox".into(),
            statements: vec![],
        };
        // `/bin/false` reads nothing, answers nothing and exits 1.
        let e = run_with(std::path::Path::new("/bin/false"), &job)
            .await
            .unwrap_err();
        assert!(matches!(e, OutboxError::Malformed(_)), "{e}");
    }
}
