//! Envelope encryption of the secrets Rotor must keep readable (token HMAC secrets, proxy
//! static header values, a project's own Redis URL): each value gets a fresh random data key, the value is encrypted by
//! the data key and the data key by the operator's key-encryption key (`ROTOR_SECRET_KEY`),
//! both with XChaCha20-Poly1305 and both bound to what the value belongs to (purpose and
//! project id as associated data), so a ciphertext copied into another project's row, or into
//! another kind of field, does not open.
//!
//! A sealed value is text: `sealed:v1:<key id>:<base64url(nonce ‖ wrapped data key ‖ nonce ‖
//! ciphertext)>`. The key id is a fingerprint of the key-encryption key, so values sealed under
//! an older key are recognised and opened with `ROTOR_SECRET_KEY_PREVIOUS`, and re-sealed under
//! the current key at start-up.
//!
//! Where the key comes from, first found wins:
//!
//! | source | |
//! |---|---|
//! | `ROTOR_SECRET_KEY` | 32 bytes as 64 hex digits or base64 (standard or URL-safe) |
//! | `ROTOR_SECRET_KEY_FILE` | a file holding such a key; generated (mode 0600) if missing |
//! | `ROTOR_STATE_DIR/secret.key` | generated if missing |
//! | `$TMPDIR/rotor-secret.key` | generated if missing |
//!
//! A generated key is a development key: a warning says so at start-up. Losing it loses every
//! sealed secret (projects then need their token secret rotated and proxy headers set again).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::ids::ProjectId;
use crate::secrets::os_random;

/// Every sealed value starts with this.
pub const PREFIX: &str = "sealed:";
const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const WRAPPED_LEN: usize = KEY_LEN + TAG_LEN;
const MIN_BLOB: usize = NONCE_LEN + WRAPPED_LEN + NONCE_LEN + TAG_LEN;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What kind of secret a value is; part of the associated data, so values cannot be moved
/// between kinds of field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `token_secrets.hmac_secret` and `previous_hmac_secret` (the same kind, so a rotation can
    /// move the current secret to the previous one in SQL).
    TokenSecret,
    /// A value of a proxy's `http.static_headers` in the project settings.
    ProxyHeader,
    /// `projects.redis_url` (may carry a password: `redis://:pass@host`).
    RedisUrl,
    /// `webhooks.secret` in the project settings (the key that signs webhook requests).
    WebhookSecret,
    /// A consumer's credential in the project settings (a PostgreSQL DSN, a Redis address or
    /// client key, a NATS URL, password or token).
    ConsumerCredential,
    /// `redis_deployments.options`: an operator's Redis deployment (addresses, passwords, TLS
    /// keys), bound to the deployment's name (see [`Context::deployment`]).
    RedisDeployment,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::TokenSecret => "token-secret",
            Purpose::ProxyHeader => "proxy-header",
            Purpose::RedisUrl => "redis-url",
            Purpose::WebhookSecret => "webhook-secret",
            Purpose::ConsumerCredential => "consumer-credential",
            Purpose::RedisDeployment => "redis-deployment",
        }
    }
}

/// What a sealed value is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub purpose: Purpose,
    pub project: &'a ProjectId,
}

impl<'a> Context<'a> {
    pub fn new(purpose: Purpose, project: &'a ProjectId) -> Self {
        Self { purpose, project }
    }

    /// The context of a Redis deployment's options: `subject` is
    /// [`deployment_subject`]`(name)`, which no project id can equal (ids are `prj_…`).
    pub fn deployment(subject: &'a ProjectId) -> Self {
        Self {
            purpose: Purpose::RedisDeployment,
            project: subject,
        }
    }

    fn aad(&self) -> Vec<u8> {
        format!("rotor/{VERSION}/{}/{}", self.purpose.as_str(), self.project).into_bytes()
    }
}

/// What a Redis deployment's sealed options are bound to besides their purpose: its name.
pub fn deployment_subject(name: &str) -> ProjectId {
    ProjectId(format!("deployment:{name}"))
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the value is not sealed")]
    NotSealed,
    #[error("sealed with format {0:?}, which this version does not read")]
    Version(String),
    #[error("sealed under key {0}, which is not configured (ROTOR_SECRET_KEY, ROTOR_SECRET_KEY_PREVIOUS)")]
    UnknownKey(String),
    #[error("the sealed value is corrupt")]
    Corrupt,
    #[error("the sealed value does not open for this project and field (copied from another row, or tampered with)")]
    Mismatch,
    #[error("no secret key: {0}")]
    NoKey(String),
}

/// Why the key-encryption key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} must be 32 bytes written as 64 hex digits or in base64")]
    Malformed(String),
    #[error("secret key file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the current key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `ROTOR_SECRET_KEY`.
    Env,
    /// A key file; `generated` when this process created it.
    File { path: PathBuf, generated: bool },
    /// Given in code (tests).
    Given,
}

struct Kek {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Kek {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let mut h = Sha256::new();
        h.update(b"rotor secret key id\0");
        h.update(key);
        let id = hex::encode(&h.finalize()[..8]);
        Self {
            id,
            cipher: XChaCha20Poly1305::new(&(*key).into()),
        }
    }
}

/// The key-encryption keys: the current one (seals and opens) and previous ones (open only).
pub struct Keyring {
    current: Kek,
    previous: Vec<Kek>,
    source: KeySource,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_id", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .field("source", &self.source)
            .finish()
    }
}

impl Keyring {
    /// A keyring over one key (no previous keys).
    pub fn from_key(key: [u8; KEY_LEN]) -> Self {
        Self {
            current: Kek::new(&key),
            previous: Vec::new(),
            source: KeySource::Given,
        }
    }

    /// Adds keys that only open values (after the operator replaced the key).
    pub fn with_previous(mut self, keys: impl IntoIterator<Item = [u8; KEY_LEN]>) -> Self {
        self.previous.extend(keys.into_iter().map(|k| Kek::new(&k)));
        self
    }

    /// Loads the key as the module doc says (generating a development key file if none is
    /// configured), plus `ROTOR_SECRET_KEY_PREVIOUS` (comma-separated keys).
    pub fn from_env() -> Result<Self, KeyError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (key, source) = if let Some(v) = var("ROTOR_SECRET_KEY") {
            (parse_key(&v, "ROTOR_SECRET_KEY")?, KeySource::Env)
        } else {
            let path = var("ROTOR_SECRET_KEY_FILE")
                .map(PathBuf::from)
                .or_else(|| var("ROTOR_STATE_DIR").map(|d| PathBuf::from(d).join("secret.key")))
                .unwrap_or_else(|| std::env::temp_dir().join("rotor-secret.key"));
            let (key, generated) = load_or_generate(&path)?;
            (key, KeySource::File { path, generated })
        };
        let mut previous = Vec::new();
        if let Some(list) = var("ROTOR_SECRET_KEY_PREVIOUS") {
            for item in list.split(',').filter(|s| !s.trim().is_empty()) {
                previous.push(parse_key(item, "ROTOR_SECRET_KEY_PREVIOUS")?);
            }
        }
        let mut ring = Self::from_key(key).with_previous(previous);
        ring.source = source;
        Ok(ring)
    }

    /// The process-wide keyring, loaded from the environment on first use (and a warning
    /// logged when it is a development key).
    pub fn global() -> Result<&'static Keyring, SealError> {
        static GLOBAL: OnceLock<Result<Keyring, String>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let ring = Keyring::from_env().map_err(|e| e.to_string())?;
                match &ring.source {
                    KeySource::File { path, generated } => tracing::warn!(
                        path = %path.display(),
                        generated,
                        key_id = %ring.key_id(),
                        "ROTOR_SECRET_KEY is not set: secrets at rest are sealed with a development key from a file; set ROTOR_SECRET_KEY in production"
                    ),
                    _ => tracing::info!(key_id = %ring.key_id(), "secret key loaded"),
                }
                Ok(ring)
            })
            .as_ref()
            .map_err(|e| SealError::NoKey(e.clone()))
    }

    /// The current key's id (a fingerprint, safe to log).
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Where the current key came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Seals `plaintext` for `ctx` under the current key.
    pub fn seal(&self, ctx: Context<'_>, plaintext: &str) -> String {
        let aad = ctx.aad();
        let data_key: [u8; KEY_LEN] = os_random();
        let key_nonce: [u8; NONCE_LEN] = os_random();
        let value_nonce: [u8; NONCE_LEN] = os_random();
        let wrapped = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(key_nonce),
                Payload {
                    msg: &data_key,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any input shorter than 256 GiB");
        let ciphertext = XChaCha20Poly1305::new(&data_key.into())
            .encrypt(
                &XNonce::from(value_nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any input shorter than 256 GiB");
        let mut blob = Vec::with_capacity(MIN_BLOB + plaintext.len());
        blob.extend_from_slice(&key_nonce);
        blob.extend_from_slice(&wrapped);
        blob.extend_from_slice(&value_nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{VERSION}:{}:{}", self.current.id, B64.encode(blob))
    }

    /// Opens a value sealed for `ctx`.
    pub fn open(&self, ctx: Context<'_>, sealed: &str) -> Result<String, SealError> {
        let envelope = Envelope::parse(sealed)?;
        let kek = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == envelope.key_id)
            .ok_or_else(|| SealError::UnknownKey(envelope.key_id.to_owned()))?;
        let blob = &envelope.blob;
        let aad = ctx.aad();
        let (key_nonce, rest) = blob.split_at(NONCE_LEN);
        let (wrapped, rest) = rest.split_at(WRAPPED_LEN);
        let (value_nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let data_key = kek
            .cipher
            .decrypt(
                &nonce(key_nonce)?,
                Payload {
                    msg: wrapped,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Mismatch)?;
        let cipher =
            XChaCha20Poly1305::new_from_slice(&data_key).map_err(|_| SealError::Corrupt)?;
        let plain = cipher
            .decrypt(
                &nonce(value_nonce)?,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Mismatch)?;
        String::from_utf8(plain).map_err(|_| SealError::Corrupt)
    }

    /// Whether `value` is sealed under a key other than the current one (and should be
    /// re-sealed). Values that are not sealed at all answer `false`.
    pub fn is_sealed_under_older_key(&self, value: &str) -> bool {
        Envelope::parse(value).is_ok_and(|e| e.key_id != self.current.id)
    }
}

fn nonce(bytes: &[u8]) -> Result<XNonce, SealError> {
    <[u8; NONCE_LEN]>::try_from(bytes)
        .map(XNonce::from)
        .map_err(|_| SealError::Corrupt)
}

/// A parsed (not yet opened) sealed value.
struct Envelope<'a> {
    key_id: &'a str,
    blob: Vec<u8>,
}

impl<'a> Envelope<'a> {
    fn parse(value: &'a str) -> Result<Self, SealError> {
        let rest = value.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
        let (version, rest) = rest.split_once(':').ok_or(SealError::Corrupt)?;
        if version != VERSION {
            return Err(SealError::Version(version.chars().take(8).collect()));
        }
        let (key_id, body) = rest.split_once(':').ok_or(SealError::Corrupt)?;
        if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SealError::Corrupt);
        }
        let blob = B64.decode(body).map_err(|_| SealError::Corrupt)?;
        if blob.len() < MIN_BLOB {
            return Err(SealError::Corrupt);
        }
        Ok(Self { key_id, blob })
    }
}

/// Whether `value` is a well-formed sealed value (of any key); what start-up sealing uses to
/// tell sealed values from plaintext left by an older version.
pub fn is_sealed(value: &str) -> bool {
    Envelope::parse(value).is_ok()
}

/// Parses a 32-byte key from hex or base64; `what` names it in the error (never the value).
pub fn parse_key(text: &str, what: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let text = text.trim();
    let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, B64]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
    };
    bytes
        .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
        .ok_or_else(|| KeyError::Malformed(what.to_owned()))
}

/// Reads the key at `path`, or creates it (0600, atomically: concurrent first starts agree on
/// one key). Returns the key and whether this call generated it.
fn load_or_generate(path: &Path) -> Result<([u8; KEY_LEN], bool), KeyError> {
    let file_err = |source| KeyError::File {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            return Ok((parse_key(&text, &path.display().to_string())?, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_err(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(file_err)?;
    }
    let key: [u8; KEY_LEN] = os_random();
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        hex::encode(os_random::<4>())
    ));
    let written = (|| {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_err(e));
    }
    // A hard link never replaces an existing file: whoever links first wins, the others read
    // the winner's key.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(file_err)?;
            Ok((parse_key(&text, &path.display().to_string())?, false))
        }
        Err(e) => Err(file_err(e)),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the secret key file is readable by other users; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::from_key([7; 32])
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_own_project_and_purpose() {
        let a = ProjectId("prj_a".into());
        let b = ProjectId("prj_b".into());
        let ring = ring();
        let sealed = ring.seal(Context::new(Purpose::TokenSecret, &a), "s3cret");
        assert!(sealed.starts_with("sealed:v1:"), "{sealed}");
        assert!(!sealed.contains("s3cret"));
        assert!(is_sealed(&sealed));
        assert_eq!(
            ring.open(Context::new(Purpose::TokenSecret, &a), &sealed)
                .unwrap(),
            "s3cret"
        );
        assert_eq!(
            ring.open(Context::new(Purpose::TokenSecret, &b), &sealed),
            Err(SealError::Mismatch)
        );
        for other in [Purpose::ProxyHeader, Purpose::RedisUrl] {
            assert_eq!(
                ring.open(Context::new(other, &a), &sealed),
                Err(SealError::Mismatch)
            );
        }
        // Fresh randomness each time.
        assert_ne!(
            sealed,
            ring.seal(Context::new(Purpose::TokenSecret, &a), "s3cret")
        );
    }

    #[test]
    fn tampered_foreign_and_plain_values_are_refused_with_their_reason() {
        let p = ProjectId("prj_a".into());
        let ctx = Context::new(Purpose::TokenSecret, &p);
        let ring = ring();
        let sealed = ring.seal(ctx, "value");
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(ring.open(ctx, &tampered), Err(SealError::Mismatch));
        assert_eq!(ring.open(ctx, "plain"), Err(SealError::NotSealed));
        assert_eq!(
            ring.open(ctx, "sealed:v9:x:y"),
            Err(SealError::Version("v9".into()))
        );
        assert_eq!(ring.open(ctx, "sealed:v1:zz:y"), Err(SealError::Corrupt));
        let other = Keyring::from_key([8; 32]);
        assert!(matches!(
            other.open(ctx, &sealed),
            Err(SealError::UnknownKey(_))
        ));
        // With the old key as a previous key, the new keyring opens it and wants to re-seal.
        let rotated = Keyring::from_key([8; 32]).with_previous([[7; 32]]);
        assert_eq!(rotated.open(ctx, &sealed).unwrap(), "value");
        assert!(rotated.is_sealed_under_older_key(&sealed));
        assert!(!ring.is_sealed_under_older_key(&sealed));
    }

    #[test]
    fn keys_parse_from_hex_and_base64_and_nothing_else() {
        let hex_key = "11".repeat(32);
        assert_eq!(parse_key(&hex_key, "k").unwrap(), [0x11; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([0x22; 32]);
        assert_eq!(parse_key(&b64, "k").unwrap(), [0x22; 32]);
        assert_eq!(parse_key(&format!(" {b64}\n"), "k").unwrap(), [0x22; 32]);
        let e = parse_key("short", "ROTOR_SECRET_KEY").unwrap_err();
        assert!(e.to_string().contains("ROTOR_SECRET_KEY"));
        assert!(!e.to_string().contains("short"));
    }

    #[test]
    fn a_missing_key_file_is_generated_private_and_then_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir =
            std::env::temp_dir().join(format!("rotor-key-test-{}", hex::encode(os_random::<6>())));
        let path = dir.join("state").join("secret.key");
        let (first, generated) = load_or_generate(&path).unwrap();
        assert!(generated);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, generated) = load_or_generate(&path).unwrap();
        assert!(!generated);
        assert_eq!(first, again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
