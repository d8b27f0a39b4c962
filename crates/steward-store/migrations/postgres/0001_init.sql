-- Steward schema version 1 (PostgreSQL).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    principal TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE TABLE identities (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_norm TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    status_reason TEXT,
    observe_only BIGINT NOT NULL DEFAULT 0,
    tokens_valid_after BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_seen_at BIGINT
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL REFERENCES identities(id),
    key_hash BYTEA NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_identity ON api_keys(identity_id);
CREATE TABLE revoked_tokens (
    token_id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE TABLE secrets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    current_version BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    rotation TEXT,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    expires_at BIGINT,
    next_rotation_at BIGINT,
    last_rotation_error TEXT
);
CREATE TABLE secret_versions (
    secret_id TEXT NOT NULL REFERENCES secrets(id),
    version BIGINT NOT NULL,
    key_version BIGINT NOT NULL,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retire_at BIGINT,
    PRIMARY KEY (secret_id, version)
);
CREATE TABLE services (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE policy_sets (
    version BIGINT PRIMARY KEY,
    policies TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT ''
);
CREATE TABLE audit_log (
    instance_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    kind TEXT NOT NULL,
    actor_id TEXT,
    operation TEXT,
    decision TEXT,
    request_id TEXT,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE INDEX audit_log_actor ON audit_log(actor_id, time_ms);
CREATE INDEX audit_log_request ON audit_log(request_id);
CREATE TABLE audit_checkpoints (
    instance_id TEXT NOT NULL,
    tree_size BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (instance_id, tree_size)
);
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    digest TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    quorum BIGINT NOT NULL,
    requested_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    used_at BIGINT,
    version BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX approvals_pending ON approvals(identity_id, digest, status);
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE kv_records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
