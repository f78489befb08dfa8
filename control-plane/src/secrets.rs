//! Secrets: random tokens that are shown once and stored as SHA-256 digests, token HMAC
//! secrets, and argon2id password hashing (off the async runtime, on low-priority threads
//! behind a bounded queue).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A random token with a readable prefix (`rtr_…` management tokens, `rk_…` API keys).
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(os_random::<32>()))
}

/// `N` bytes from the operating system's CSPRNG (never a seeded fast generator: these become
/// keys, tokens and secrets).
pub fn os_random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}

/// SHA-256 hex digest (what is stored for tokens and keys).
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A new HMAC secret for a project's connection tokens.
pub fn new_hmac_secret() -> String {
    hex::encode(os_random::<32>())
}

/// How long a password check may wait in the queue before the caller is told to retry.
const HASHING_WAIT: Duration = Duration::from_secs(5);
/// How many password checks may wait, per hashing thread; more are refused at once.
const HASHING_QUEUE_PER_SLOT: usize = 16;
/// The niceness of the hashing threads: the lowest priority, so the scheduler gives the edge
/// and every tenant process the CPU first and argon2 only what is left.
const HASHING_NICENESS: i32 = 19;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too many password checks are queued (a flood): try again in a moment.
    #[error("too many password checks in progress")]
    Busy,
    #[error("hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

/// One queued password job; `run` is skipped when its caller has gone or waited too long.
struct Job {
    queued_at: Instant,
    run: Box<dyn FnOnce() + Send>,
}

/// Where argon2 runs: dedicated threads (half the CPUs, at least one) at the lowest
/// scheduling priority, never the async runtime that serves every tenant's edge, behind a
/// bounded queue, so a flood of logins is answered "busy" instead of piling up and can take
/// only CPU that tenants leave idle.
struct PasswordWork {
    jobs: std::sync::mpsc::SyncSender<Job>,
    running: AtomicUsize,
    /// Checks admitted per second, box-wide: the CPU and memory bandwidth argon2 may take
    /// from tenants is bounded whatever the number of attacking addresses.
    rate: parking_lot::Mutex<TokenBucket>,
}

/// A token bucket: `per_second` tokens a second, at most `per_second` saved up.
struct TokenBucket {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            tokens: per_second,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second);
        self.at = now;
    }

    /// Whether a token is there now (without taking it).
    fn has_token(&mut self) -> bool {
        self.refill();
        self.tokens >= 1.0
    }

    fn take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `ROTOR_PASSWORD_CHECKS_PER_SECOND` (default 10): password hashes and checks admitted per
/// second on this control plane; more are answered "busy, retry".
fn checks_per_second() -> u32 {
    std::env::var("ROTOR_PASSWORD_CHECKS_PER_SECOND")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &u32| n > 0)
        .unwrap_or(10)
}

impl PasswordWork {
    fn get() -> &'static Self {
        static WORK: OnceLock<PasswordWork> = OnceLock::new();
        WORK.get_or_init(|| {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            let threads = (cpus / 2).max(1);
            let (jobs, queue) =
                std::sync::mpsc::sync_channel::<Job>(threads * HASHING_QUEUE_PER_SLOT);
            let queue = Arc::new(parking_lot::Mutex::new(queue));
            for n in 0..threads {
                let queue = queue.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("rotor-argon2-{n}"))
                    .spawn(move || {
                        lower_this_threads_priority();
                        loop {
                            let job = queue.lock().recv();
                            let Ok(job) = job else { return };
                            if job.queued_at.elapsed() > HASHING_WAIT {
                                tracing::warn!("password check dropped: it waited too long");
                                continue;
                            }
                            (job.run)();
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a password hashing thread");
                }
            }
            PasswordWork {
                jobs,
                running: AtomicUsize::new(0),
                rate: parking_lot::Mutex::new(TokenBucket::new(checks_per_second())),
            }
        })
    }

    /// Runs `work` on a hashing thread; [`PasswordError::Busy`] when the queue is full or the
    /// work waited longer than [`HASHING_WAIT`].
    async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job = Job {
            queued_at: Instant::now(),
            run: Box::new(move || {
                // A caller that gave up (client gone) costs no hashing.
                if done.is_closed() {
                    return;
                }
                self.running.fetch_add(1, Ordering::AcqRel);
                let value = work();
                self.running.fetch_sub(1, Ordering::AcqRel);
                let _ = done.send(value);
            }),
        };
        if !self.rate.lock().take() {
            tracing::warn!("password check refused: over the box-wide rate");
            return Err(PasswordError::Busy);
        }
        if self.jobs.try_send(job).is_err() {
            tracing::warn!("password check refused: the hashing queue is full");
            return Err(PasswordError::Busy);
        }
        result.await.map_err(|_| PasswordError::Busy)
    }
}

/// Gives the calling thread the lowest CPU priority (Linux applies niceness per thread).
fn lower_this_threads_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), HASHING_NICENESS) {
        tracing::warn!(error = %e, "cannot lower the password hashing thread's priority");
    }
}

/// Changes how many password hashes and checks are admitted per second (the start-up value is
/// `ROTOR_PASSWORD_CHECKS_PER_SECOND`); for processes that embed the app, such as tests that
/// log in many times in a row.
pub fn set_password_checks_per_second(per_second: u32) {
    *PasswordWork::get().rate.lock() = TokenBucket::new(per_second);
}

/// Whether the box-wide rate would admit a password check now (without using it up): when
/// not, a login or sign-up is answered "busy" before it costs anything else, such as a round
/// trip to the login counters. A check may still be refused when it comes to it.
pub fn password_check_admissible() -> bool {
    PasswordWork::get().rate.lock().has_token()
}

/// How many password hashes or checks are computing right now.
pub fn password_work_running() -> usize {
    PasswordWork::get().running.load(Ordering::Acquire)
}

/// Hashes a password with argon2id and a random salt (PHC string). CPU-heavy: only ever
/// called through [`hash_password_async`].
fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt_bytes: [u8; 16] = os_random();
    let salt = SaltString::encode_b64(&salt_bytes)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a stored PHC string. CPU-heavy: only ever called through
/// [`verify_password_async`].
fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Hashes a password with argon2id and a random salt (PHC string), on the hashing
/// threads; [`PasswordError::Busy`] when too many checks are queued.
pub async fn hash_password_async(password: &str) -> Result<String, PasswordError> {
    let password = password.to_owned();
    PasswordWork::get()
        .run(move || hash_password(&password))
        .await?
        .map_err(PasswordError::Hash)
}

/// Checks a password against a stored PHC string, on the hashing threads;
/// [`PasswordError::Busy`] when too many checks are queued.
pub async fn verify_password_async(password: &str, hash: &str) -> Result<bool, PasswordError> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    PasswordWork::get()
        .run(move || verify_password(&password, &hash))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[tokio::test]
    async fn password_work_runs_on_low_priority_threads_and_gives_the_same_answers() {
        let h = hash_password_async("correct horse").await.unwrap();
        assert!(verify_password_async("correct horse", &h).await.unwrap());
        assert!(!verify_password_async("wrong", &h).await.unwrap());
        // This test's runtime is the test thread itself; the work must happen elsewhere.
        let here = std::thread::current().id();
        let there = PasswordWork::get()
            .run(|| std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(here, there, "argon2 must not run on the runtime's thread");
        let niceness = PasswordWork::get()
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(niceness, HASHING_NICENESS, "hashing yields to tenants");
    }

    #[test]
    fn the_bucket_admits_its_rate_and_refills_with_time() {
        let mut b = TokenBucket::new(3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take(), "a burst is capped at one second's worth");
        b.at -= Duration::from_millis(400);
        assert!(b.take(), "refilled by 1.2 tokens");
        assert!(!b.take());
    }

    #[test]
    fn tokens_are_random_and_digests_stable() {
        let a = random_token("rk_");
        assert!(a.starts_with("rk_") && a.len() == 67);
        assert_ne!(a, random_token("rk_"));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
