-- Rotor control plane: accounts, projects and everything a tenant's config is built from.
-- IDs are prefixed text (acc_…, prj_…, key_…, ns_…, tok_…); secrets shown once are stored as
-- SHA-256 hex digests; passwords as argon2id PHC strings.

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE management_tokens (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ
);
CREATE INDEX management_tokens_account ON management_tokens(account_id);

CREATE TABLE projects (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    slug            TEXT NOT NULL UNIQUE,
    engine          TEXT NOT NULL DEFAULT 'memory' CHECK (engine IN ('memory', 'redis')),
    redis_url       TEXT,
    redis_prefix    TEXT,
    plan            TEXT NOT NULL DEFAULT 'free',
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    -- Client and channel settings outside namespaces (allowed_origins, anonymous access,
    -- options of channels without a namespace), as Centrifugo option JSON.
    settings        JSONB NOT NULL DEFAULT '{}'::jsonb,
    config_version  BIGINT NOT NULL DEFAULT 1,
    applied_version BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX projects_account ON projects(account_id);

CREATE TABLE token_secrets (
    project_id           TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    hmac_secret          TEXT NOT NULL,
    previous_hmac_secret TEXT,
    previous_valid_until TIMESTAMPTZ,
    rsa_public_key       TEXT,
    ecdsa_public_key     TEXT,
    jwks_url             TEXT,
    rotated_at           TIMESTAMPTZ
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ
);
CREATE INDEX api_keys_project ON api_keys(project_id);

CREATE TABLE namespaces (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    options    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    account_id TEXT,
    project_id TEXT,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    before     JSONB,
    after      JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_project ON audit_log(project_id, created_at);
