//! Queries, grouped by table. Every statement binds its values; none is formatted.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::models::*;
use crate::{Store, StoreError};

fn opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

fn admin_token(row: &AnyRow) -> Result<AdminToken, StoreError> {
    Ok(AdminToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        principal: row.try_get("principal")?,
        created_at: row.try_get("created_at")?,
        expires_at: opt_i64(row, "expires_at")?,
        revoked_at: opt_i64(row, "revoked_at")?,
    })
}

fn identity(row: &AnyRow) -> Result<Identity, StoreError> {
    let labels: String = row.try_get("labels")?;
    let labels: BTreeMap<String, String> = serde_json::from_str(&labels)?;
    Ok(Identity {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        owner: row.try_get("owner")?,
        description: row.try_get("description")?,
        labels,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        observe_only: row.try_get::<i64, _>("observe_only")? != 0,
        tokens_valid_after: row.try_get("tokens_valid_after")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_seen_at: opt_i64(row, "last_seen_at")?,
    })
}

fn api_key(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        identity_id: row.try_get("identity_id")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        expires_at: opt_i64(row, "expires_at")?,
        last_used_at: opt_i64(row, "last_used_at")?,
        revoked_at: opt_i64(row, "revoked_at")?,
    })
}

fn secret(row: &AnyRow) -> Result<SecretRecord, StoreError> {
    let rotation: Option<String> = row.try_get("rotation")?;
    Ok(SecretRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        current_version: row.try_get("current_version")?,
        fingerprint: row.try_get("fingerprint")?,
        rotation: rotation.map(|r| serde_json::from_str(&r)).transpose()?,
        created_at: row.try_get("created_at")?,
        rotated_at: opt_i64(row, "rotated_at")?,
        expires_at: opt_i64(row, "expires_at")?,
        next_rotation_at: opt_i64(row, "next_rotation_at")?,
        last_rotation_error: row.try_get("last_rotation_error")?,
    })
}

fn secret_version(row: &AnyRow) -> Result<SecretVersion, StoreError> {
    Ok(SecretVersion {
        secret_id: row.try_get("secret_id")?,
        version: row.try_get("version")?,
        key_version: row.try_get("key_version")?,
        sealed: row.try_get("sealed")?,
        created_at: row.try_get("created_at")?,
        retire_at: opt_i64(row, "retire_at")?,
    })
}

fn service(row: &AnyRow) -> Result<ServiceRecord, StoreError> {
    let spec: String = row.try_get("spec")?;
    Ok(ServiceRecord {
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        spec: serde_json::from_str(&spec)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn policy_set(row: &AnyRow) -> Result<PolicySetRecord, StoreError> {
    let policies: String = row.try_get("policies")?;
    Ok(PolicySetRecord {
        version: row.try_get("version")?,
        policies: serde_json::from_str(&policies)?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        comment: row.try_get("comment")?,
    })
}

fn audit_row(row: &AnyRow) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        instance_id: row.try_get("instance_id")?,
        seq: row.try_get("seq")?,
        time_ms: row.try_get("time_ms")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        kind: row.try_get("kind")?,
        actor_id: row.try_get("actor_id")?,
        operation: row.try_get("operation")?,
        decision: row.try_get("decision")?,
        request_id: row.try_get("request_id")?,
        event: row.try_get("event")?,
    })
}

fn approval(row: &AnyRow) -> Result<ApprovalRecord, StoreError> {
    let body: String = row.try_get("body")?;
    Ok(ApprovalRecord {
        id: row.try_get("id")?,
        identity_id: row.try_get("identity_id")?,
        operation: row.try_get("operation")?,
        digest: row.try_get("digest")?,
        body: serde_json::from_str(&body)?,
        status: row.try_get("status")?,
        quorum: row.try_get("quorum")?,
        requested_at: row.try_get("requested_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: opt_i64(row, "decided_at")?,
        used_at: opt_i64(row, "used_at")?,
        version: row.try_get("version")?,
    })
}

fn grant(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    let body: String = row.try_get("body")?;
    Ok(GrantRecord {
        id: row.try_get("id")?,
        identity_id: row.try_get("identity_id")?,
        body: serde_json::from_str(&body)?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn kv(row: &AnyRow) -> Result<KvRecord, StoreError> {
    let body: String = row.try_get("body")?;
    Ok(KvRecord {
        kind: row.try_get("kind")?,
        id: row.try_get("id")?,
        body: serde_json::from_str(&body)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn not_found(what: &str, id: &str) -> StoreError {
    StoreError::NotFound(format!("{what} `{id}`"))
}

/// Meta key/value settings.
impl Store {
    /// Reads a meta value.
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    /// Writes a meta value, replacing any previous one.
    pub async fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes a meta value only if the key is absent; returns whether it was written.
    pub async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Admin tokens.
impl Store {
    /// Stores a new admin token.
    pub async fn admin_token_insert(
        &self,
        token: &AdminToken,
        token_hash: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO admin_tokens (id, name, role, token_hash, principal, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.role)
        .bind(token_hash)
        .bind(&token.principal)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Finds an admin token by the SHA-256 of its value.
    pub async fn admin_token_by_hash(&self, hash: &[u8]) -> Result<Option<AdminToken>, StoreError> {
        let row = sqlx::query("SELECT * FROM admin_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(admin_token).transpose()
    }

    /// Lists admin tokens.
    pub async fn admin_token_list(&self) -> Result<Vec<AdminToken>, StoreError> {
        let rows = sqlx::query("SELECT * FROM admin_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(admin_token).collect()
    }

    /// Revokes an admin token.
    pub async fn admin_token_revoke(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("admin token", id));
        }
        Ok(())
    }
}

/// Identities and API keys.
impl Store {
    /// Stores a new identity; a name that normalises to an existing one is a conflict.
    pub async fn identity_insert(
        &self,
        identity: &Identity,
        name_norm: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO identities (id, name, name_norm, kind, owner, description, labels, status, status_reason, \
             observe_only, tokens_valid_after, created_at, updated_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&identity.id)
        .bind(&identity.name)
        .bind(name_norm)
        .bind(&identity.kind)
        .bind(&identity.owner)
        .bind(&identity.description)
        .bind(serde_json::to_string(&identity.labels)?)
        .bind(&identity.status)
        .bind(&identity.status_reason)
        .bind(i64::from(identity.observe_only))
        .bind(identity.tokens_valid_after)
        .bind(identity.created_at)
        .bind(identity.updated_at)
        .bind(identity.last_seen_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("an identity named `{}` already exists", identity.name))
            }
            other => other,
        })?;
        Ok(())
    }

    /// Replaces an identity's mutable fields.
    pub async fn identity_update(
        &self,
        identity: &Identity,
        name_norm: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE identities SET name = $1, name_norm = $2, kind = $3, owner = $4, description = $5, labels = $6, \
             status = $7, status_reason = $8, observe_only = $9, tokens_valid_after = $10, updated_at = $11 WHERE id = $12",
        )
        .bind(&identity.name)
        .bind(name_norm)
        .bind(&identity.kind)
        .bind(&identity.owner)
        .bind(&identity.description)
        .bind(serde_json::to_string(&identity.labels)?)
        .bind(&identity.status)
        .bind(&identity.status_reason)
        .bind(i64::from(identity.observe_only))
        .bind(identity.tokens_valid_after)
        .bind(identity.updated_at)
        .bind(&identity.id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("identity", &identity.id));
        }
        Ok(())
    }

    /// Finds an identity by id.
    pub async fn identity_get(&self, id: &str) -> Result<Option<Identity>, StoreError> {
        let row = sqlx::query("SELECT * FROM identities WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(identity).transpose()
    }

    /// Finds an identity by normalised name.
    pub async fn identity_by_name(&self, name_norm: &str) -> Result<Option<Identity>, StoreError> {
        let row = sqlx::query("SELECT * FROM identities WHERE name_norm = $1")
            .bind(name_norm)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(identity).transpose()
    }

    /// Lists identities, optionally only those of one owner.
    pub async fn identity_list(&self, owner: Option<&str>) -> Result<Vec<Identity>, StoreError> {
        let rows = match owner {
            Some(owner) => {
                sqlx::query("SELECT * FROM identities WHERE owner = $1 ORDER BY name_norm")
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM identities ORDER BY name_norm")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(identity).collect()
    }

    /// Records that an identity was seen.
    pub async fn identity_touch(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE identities SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a new API key's hash.
    pub async fn api_key_insert(
        &self,
        key: &ApiKeyRecord,
        key_hash: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, identity_id, key_hash, prefix, created_at, expires_at, last_used_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.identity_id)
        .bind(key_hash)
        .bind(&key.prefix)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.last_used_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Finds an API key by the SHA-256 of its value.
    pub async fn api_key_by_hash(&self, hash: &[u8]) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_key).transpose()
    }

    /// Lists an identity's keys.
    pub async fn api_key_list(&self, identity_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM api_keys WHERE identity_id = $1 ORDER BY created_at, id")
                .bind(identity_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(api_key).collect()
    }

    /// Records a key's use.
    pub async fn api_key_touch(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes one key, or all keys of an identity when `key_id` is `None`.
    pub async fn api_key_revoke(
        &self,
        identity_id: &str,
        key_id: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let done = match key_id {
            Some(key_id) => sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE identity_id = $2 AND id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(identity_id)
            .bind(key_id)
            .execute(&self.pool)
            .await?,
            None => sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE identity_id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(identity_id)
                .execute(&self.pool)
                .await?,
        };
        Ok(done.rows_affected())
    }

    /// Records a revoked access token id until it would have expired anyway.
    pub async fn token_revoke(
        &self,
        token_id: &str,
        identity_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (token_id, identity_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(token_id)
        .bind(identity_id)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revoked token ids that have not yet expired.
    pub async fn token_revocations(&self, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT token_id, identity_id FROM revoked_tokens WHERE expires_at > $1")
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("token_id")?, r.try_get("identity_id")?)))
            .collect()
    }

    /// Stores a sealed token-signing key.
    pub async fn signing_key_insert(
        &self,
        kid: &str,
        sealed: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO signing_keys (kid, sealed, created_at) VALUES ($1, $2, $3)")
            .bind(kid)
            .bind(sealed)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Signing keys, newest first: `(kid, sealed, created_at, retired_at)`.
    pub async fn signing_keys(
        &self,
    ) -> Result<Vec<(String, Vec<u8>, i64, Option<i64>)>, StoreError> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, kid DESC")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kid")?,
                    r.try_get("sealed")?,
                    r.try_get("created_at")?,
                    opt_i64(r, "retired_at")?,
                ))
            })
            .collect()
    }

    /// Marks a signing key retired (it still verifies until dropped).
    pub async fn signing_key_retire(&self, kid: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
        )
        .bind(now)
        .bind(kid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Vault secrets.
impl Store {
    /// Creates a secret with its first version, atomically.
    pub async fn secret_create(
        &self,
        secret: &SecretRecord,
        first: &SecretVersion,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO secrets (id, name, current_version, fingerprint, rotation, created_at, rotated_at, expires_at, \
             next_rotation_at, last_rotation_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&secret.id)
        .bind(&secret.name)
        .bind(secret.current_version)
        .bind(&secret.fingerprint)
        .bind(secret.rotation.as_ref().map(|r| r.to_string()))
        .bind(secret.created_at)
        .bind(secret.rotated_at)
        .bind(secret.expires_at)
        .bind(secret.next_rotation_at)
        .bind(&secret.last_rotation_error)
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("a secret named `{}` already exists", secret.name)),
            other => other,
        })?;
        insert_version(&mut tx, first).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds a version and makes it current; the previous version retires at `retire_prev_at`.
    pub async fn secret_add_version(
        &self,
        secret: &SecretRecord,
        version: &SecretVersion,
        retire_prev_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_version(&mut tx, version).await?;
        sqlx::query("UPDATE secret_versions SET retire_at = $1 WHERE secret_id = $2 AND version < $3 AND retire_at IS NULL")
            .bind(retire_prev_at.unwrap_or(version.created_at))
            .bind(&secret.id)
            .bind(version.version)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(
            "UPDATE secrets SET current_version = $1, fingerprint = $2, rotation = $3, rotated_at = $4, expires_at = $5, \
             next_rotation_at = $6, last_rotation_error = $7 WHERE id = $8 AND current_version = $9",
        )
        .bind(version.version)
        .bind(&secret.fingerprint)
        .bind(secret.rotation.as_ref().map(|r| r.to_string()))
        .bind(secret.rotated_at)
        .bind(secret.expires_at)
        .bind(secret.next_rotation_at)
        .bind(&secret.last_rotation_error)
        .bind(&secret.id)
        .bind(version.version.saturating_sub(1))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "secret `{}` changed concurrently",
                secret.name
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Updates a secret's metadata (rotation policy, schedule, errors) without a new version.
    pub async fn secret_update_meta(&self, secret: &SecretRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE secrets SET rotation = $1, expires_at = $2, next_rotation_at = $3, last_rotation_error = $4 WHERE id = $5",
        )
        .bind(secret.rotation.as_ref().map(|r| r.to_string()))
        .bind(secret.expires_at)
        .bind(secret.next_rotation_at)
        .bind(&secret.last_rotation_error)
        .bind(&secret.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Finds a secret by name.
    pub async fn secret_by_name(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(secret).transpose()
    }

    /// Lists secrets.
    pub async fn secret_list(&self) -> Result<Vec<SecretRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(secret).collect()
    }

    /// One sealed version.
    pub async fn secret_version(
        &self,
        secret_id: &str,
        version: i64,
    ) -> Result<Option<SecretVersion>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM secret_versions WHERE secret_id = $1 AND version = $2")
                .bind(secret_id)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(secret_version).transpose()
    }

    /// All versions of a secret, oldest first.
    pub async fn secret_versions(&self, secret_id: &str) -> Result<Vec<SecretVersion>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM secret_versions WHERE secret_id = $1 ORDER BY version")
                .bind(secret_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(secret_version).collect()
    }

    /// Versions still wrapped by a master key other than `key_version`, up to `limit`.
    pub async fn secret_versions_not_wrapped_by(
        &self,
        key_version: i64,
        limit: i64,
    ) -> Result<Vec<SecretVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM secret_versions WHERE key_version <> $1 ORDER BY secret_id, version LIMIT $2",
        )
        .bind(key_version)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_version).collect()
    }

    /// Replaces one version's envelope after re-wrapping, if it is still at `old_key_version`.
    pub async fn secret_version_rewrap(
        &self,
        secret_id: &str,
        version: i64,
        old_key_version: i64,
        new_key_version: i64,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE secret_versions SET sealed = $1, key_version = $2 WHERE secret_id = $3 AND version = $4 AND key_version = $5",
        )
        .bind(sealed)
        .bind(new_key_version)
        .bind(secret_id)
        .bind(version)
        .bind(old_key_version)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Number of sealed versions under each master key version.
    pub async fn secret_key_versions(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query("SELECT key_version, COUNT(*) AS n FROM secret_versions GROUP BY key_version ORDER BY key_version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key_version")?, r.try_get("n")?)))
            .collect()
    }

    /// Creates many new secrets, each with its first version, in one transaction (bulk import).
    /// Rows go in multi-row `INSERT`s (only placeholders are generated; every value is bound).
    pub async fn secret_create_many(
        &self,
        items: &[(SecretRecord, SecretVersion)],
    ) -> Result<(), StoreError> {
        const ROWS_PER_STATEMENT: usize = 200;
        let mut tx = self.begin_write().await?;
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            let sql = multi_row_insert(
                "INSERT INTO secrets (id, name, current_version, fingerprint, rotation, created_at, rotated_at, expires_at, \
                 next_rotation_at, last_rotation_error) VALUES ",
                10,
                chunk.len(),
                self.anonymous_placeholders(),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (secret, _) in chunk {
                q = q
                    .bind(secret.id.clone())
                    .bind(secret.name.clone())
                    .bind(secret.current_version)
                    .bind(secret.fingerprint.clone())
                    .bind(secret.rotation.as_ref().map(|r| r.to_string()))
                    .bind(secret.created_at)
                    .bind(secret.rotated_at)
                    .bind(secret.expires_at)
                    .bind(secret.next_rotation_at)
                    .bind(secret.last_rotation_error.clone());
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict("a secret of this import already exists".to_owned())
                    }
                    other => other,
                })?;
            let sql = multi_row_insert(
                "INSERT INTO secret_versions (secret_id, version, key_version, sealed, created_at, retire_at) VALUES ",
                6,
                chunk.len(),
                self.anonymous_placeholders(),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (_, v) in chunk {
                q = q
                    .bind(v.secret_id.clone())
                    .bind(v.version)
                    .bind(v.key_version)
                    .bind(v.sealed.clone())
                    .bind(v.created_at)
                    .bind(v.retire_at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Re-wrapped envelopes written in one transaction, each only if its row is still at the
    /// old key version (compare-and-swap). Items are `(secret_id, version, old_key_version,
    /// new_key_version, sealed)`; returns how many rows were replaced.
    pub async fn secret_version_rewrap_batch(
        &self,
        items: &[(String, i64, i64, i64, Vec<u8>)],
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut replaced = 0u64;
        for (secret_id, version, old_key_version, new_key_version, sealed) in items {
            let done = sqlx::query(
                "UPDATE secret_versions SET sealed = $1, key_version = $2 WHERE secret_id = $3 AND version = $4 AND key_version = $5",
            )
            .bind(sealed)
            .bind(*new_key_version)
            .bind(secret_id)
            .bind(*version)
            .bind(*old_key_version)
            .execute(&mut *tx)
            .await?;
            replaced = replaced.saturating_add(done.rows_affected());
        }
        tx.commit().await?;
        Ok(replaced)
    }

    /// Every sealed version after `(secret_id, version)` in key order, up to `limit` (paging).
    pub async fn secret_versions_page(
        &self,
        after_id: &str,
        after_version: i64,
        limit: i64,
    ) -> Result<Vec<SecretVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM secret_versions WHERE secret_id > $1 OR (secret_id = $1 AND version > $2) \
             ORDER BY secret_id, version LIMIT $3",
        )
        .bind(after_id)
        .bind(after_version)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_version).collect()
    }

    /// Replaces a sealed token-signing key if it still holds `old` (compare-and-swap).
    pub async fn signing_key_rewrap(
        &self,
        kid: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE signing_keys SET sealed = $1 WHERE kid = $2 AND sealed = $3")
                .bind(new)
                .bind(kid)
                .bind(old)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a meta value if it still holds `old` (compare-and-swap).
    pub async fn meta_cas(&self, key: &str, old: &str, new: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE meta SET value = $1 WHERE key = $2 AND value = $3")
            .bind(new)
            .bind(key)
            .bind(old)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// `prefix` followed by `rows` groups of `columns` placeholders: `($1, $2), ($3, $4)`.
///
/// With `anonymous` (SQLite) the placeholders are `?`: for every numbered one (`$n`) the
/// driver asks SQLite for the parameter's name, a linear scan of all names, which makes
/// binding a multi-row insert quadratic in its parameter count.
fn multi_row_insert(prefix: &str, columns: usize, rows: usize, anonymous: bool) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * columns * 5);
    sql.push_str(prefix);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..columns {
            if col > 0 {
                sql.push_str(", ");
            }
            if anonymous {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&(row * columns + col + 1).to_string());
            }
        }
        sql.push(')');
    }
    sql
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    v: &SecretVersion,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO secret_versions (secret_id, version, key_version, sealed, created_at, retire_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&v.secret_id)
    .bind(v.version)
    .bind(v.key_version)
    .bind(&v.sealed)
    .bind(v.created_at)
    .bind(v.retire_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Services.
impl Store {
    /// Creates or replaces a service; returns true if it was new.
    pub async fn service_upsert(&self, svc: &ServiceRecord) -> Result<bool, StoreError> {
        let existed = self.service_get(&svc.name).await?.is_some();
        sqlx::query(
            "INSERT INTO services (name, kind, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, spec = excluded.spec, updated_at = excluded.updated_at",
        )
        .bind(&svc.name)
        .bind(&svc.kind)
        .bind(svc.spec.to_string())
        .bind(svc.created_at)
        .bind(svc.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(!existed)
    }

    /// Finds a service.
    pub async fn service_get(&self, name: &str) -> Result<Option<ServiceRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM services WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(service).transpose()
    }

    /// Lists services.
    pub async fn service_list(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM services ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(service).collect()
    }

    /// Removes a service.
    pub async fn service_remove(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM services WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("service", name));
        }
        Ok(())
    }
}

/// Policy set versions.
impl Store {
    /// Appends a new policy set version; fails with a conflict if `version` exists.
    pub async fn policy_set_insert(&self, set: &PolicySetRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policy_sets (version, policies, created_at, created_by, comment) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(set.version)
        .bind(serde_json::to_string(&set.policies)?)
        .bind(set.created_at)
        .bind(&set.created_by)
        .bind(&set.comment)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest policy set version, if any.
    pub async fn policy_set_latest(&self) -> Result<Option<PolicySetRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM policy_sets ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(policy_set).transpose()
    }

    /// A given version.
    pub async fn policy_set_get(
        &self,
        version: i64,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM policy_sets WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(policy_set).transpose()
    }

    /// Version history, newest first, without policy bodies' diff.
    pub async fn policy_set_history(&self, limit: i64) -> Result<Vec<PolicySetRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM policy_sets ORDER BY version DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(policy_set).collect()
    }
}

/// The audit log.
impl Store {
    /// Appends records atomically: all are durable when this returns `Ok`, none otherwise.
    ///
    /// Rows go in multi-row `INSERT`s of up to [`AUDIT_ROWS_PER_INSERT`] rows, one
    /// transaction (one sync) for the batch: per-statement overhead, not the sync,
    /// dominated group commits of many rows. Only placeholders are generated; values are
    /// always bound.
    pub async fn audit_append(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        // A failed statement or COMMIT (disk full, read-only file system) can leave the
        // connection inside its transaction, holding SQLite's write lock. It is rolled back
        // here, or discarded if that fails too, and never returned to the pool mid-
        // transaction: otherwise every later write waits on the lock and fails.
        let mut conn = self.pool.acquire().await?;
        sqlx::query(self.begin_write_sql())
            .execute(&mut *conn)
            .await?;
        let result: Result<(), sqlx::Error> = async {
            for chunk in audit_chunks(rows) {
                // INVARIANT: the generated text holds only column names and placeholders.
                let sql = sqlx::AssertSqlSafe(audit_insert_sql(
                    chunk.len(),
                    self.anonymous_placeholders(),
                ));
                let mut query = sqlx::query(sql);
                for r in chunk {
                    query = query
                        .bind(&r.instance_id)
                        .bind(r.seq)
                        .bind(r.time_ms)
                        .bind(&r.prev_hash)
                        .bind(&r.hash)
                        .bind(&r.kind)
                        .bind(&r.actor_id)
                        .bind(&r.operation)
                        .bind(&r.decision)
                        .bind(&r.request_id)
                        .bind(&r.event);
                }
                query.execute(&mut *conn).await?;
            }
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                let _ = sqlx::Connection::close(conn.detach()).await;
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// The last record of an instance's chain.
    pub async fn audit_head(&self, instance_id: &str) -> Result<Option<AuditRow>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM audit_log WHERE instance_id = $1 ORDER BY seq DESC LIMIT 1")
                .bind(instance_id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(audit_row).transpose()
    }

    /// One record.
    pub async fn audit_get(
        &self,
        instance_id: &str,
        seq: i64,
    ) -> Result<Option<AuditRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM audit_log WHERE instance_id = $1 AND seq = $2")
            .bind(instance_id)
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(audit_row).transpose()
    }

    /// Records of one chain in sequence order, from `from_seq` on, up to `limit`.
    pub async fn audit_range(
        &self,
        instance_id: &str,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE instance_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(instance_id)
        .bind(from_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// Chain hashes of records `1..=size` of a chain (the Merkle leaves).
    pub async fn audit_hashes(
        &self,
        instance_id: &str,
        size: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = sqlx::query(
            "SELECT hash FROM audit_log WHERE instance_id = $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(instance_id)
        .bind(size)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<Vec<u8>, _>(0)?))
            .collect()
    }

    /// Instance ids that have audit chains.
    pub async fn audit_instances(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT instance_id FROM audit_log ORDER BY instance_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Searches the log; newest last.
    pub async fn audit_search(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        // Optional filters are expressed as `($n IS NULL OR col = $n)` so the statement is fixed.
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE \
             ($1 IS NULL OR instance_id = $1) AND ($2 IS NULL OR actor_id = $2) AND ($3 IS NULL OR operation = $3) AND \
             ($4 IS NULL OR decision = $4) AND ($5 IS NULL OR kind = $5) AND ($6 IS NULL OR request_id = $6) AND \
             ($7 IS NULL OR time_ms >= $7) AND ($8 IS NULL OR time_ms < $8) AND ($9 IS NULL OR seq > $9) \
             ORDER BY time_ms, instance_id, seq LIMIT $10",
        )
        .bind(q.instance_id.clone())
        .bind(q.actor_id.clone())
        .bind(q.operation.clone())
        .bind(q.decision.clone())
        .bind(q.kind.clone())
        .bind(q.request_id.clone())
        .bind(q.since_ms)
        .bind(q.until_ms)
        .bind(q.after_seq)
        .bind(if q.limit <= 0 { 1000 } else { q.limit })
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// Stores a signed checkpoint.
    pub async fn audit_checkpoint_insert(
        &self,
        instance_id: &str,
        tree_size: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (instance_id, tree_size, body) VALUES ($1, $2, $3) \
             ON CONFLICT (instance_id, tree_size) DO NOTHING",
        )
        .bind(instance_id)
        .bind(tree_size)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Chain hashes of records `from_seq..to_seq` (end exclusive) of a chain, in order.
    pub async fn audit_hash_range(
        &self,
        instance_id: &str,
        from_seq: i64,
        to_seq: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = sqlx::query("SELECT hash FROM audit_log WHERE instance_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq")
            .bind(instance_id)
            .bind(from_seq)
            .bind(to_seq)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<Vec<u8>, _>(0)?))
            .collect()
    }

    /// Records of one chain with `from_seq <= seq < to_seq` and, when given, time in
    /// `[since_ms, until_ms)`, in sequence order, up to `limit`.
    pub async fn audit_range_filtered(
        &self,
        instance_id: &str,
        from_seq: i64,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE instance_id = $1 AND seq >= $2 AND ($3 IS NULL OR time_ms >= $3) \
             AND ($4 IS NULL OR time_ms < $4) ORDER BY seq LIMIT $5",
        )
        .bind(instance_id)
        .bind(from_seq)
        .bind(since_ms)
        .bind(until_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// Deletes the records of a chain with `seq < before_seq` and records the archive
    /// anchor in `meta` in the same transaction; returns the number deleted.
    pub async fn audit_archive_cut(
        &self,
        instance_id: &str,
        before_seq: i64,
        anchor_key: &str,
        anchor: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(anchor_key)
        .bind(anchor)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM audit_log WHERE instance_id = $1 AND seq < $2")
            .bind(instance_id)
            .bind(before_seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Checkpoints of a chain, oldest first.
    pub async fn audit_checkpoints(
        &self,
        instance_id: &str,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT tree_size, body FROM audit_checkpoints WHERE instance_id = $1 ORDER BY tree_size")
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tree_size")?, r.try_get("body")?)))
            .collect()
    }
}

const PENDING_FOR_DIGEST: &str = "SELECT * FROM approvals WHERE identity_id = $1 AND digest = $2 \
     AND status = 'pending' AND expires_at > $3 LIMIT 1";

/// Approvals and grants.
impl Store {
    /// The pending, unexpired approval for this identity and request digest, if any.
    pub async fn approval_pending_for(
        &self,
        identity_id: &str,
        digest: &str,
        now: i64,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let row = sqlx::query(PENDING_FOR_DIGEST)
            .bind(identity_id)
            .bind(digest)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(approval).transpose()
    }

    /// Creates a pending approval unless one is already pending for the same identity and
    /// digest; returns the pending one and whether it was newly created.
    pub async fn approval_create_or_coalesce(
        &self,
        a: &ApprovalRecord,
    ) -> Result<(ApprovalRecord, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(PENDING_FOR_DIGEST)
            .bind(&a.identity_id)
            .bind(&a.digest)
            .bind(a.requested_at)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            return Ok((approval(&row)?, false));
        }
        sqlx::query(
            "INSERT INTO approvals (id, identity_id, operation, digest, body, status, quorum, requested_at, expires_at, decided_at, used_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&a.id)
        .bind(&a.identity_id)
        .bind(&a.operation)
        .bind(&a.digest)
        .bind(a.body.to_string())
        .bind(&a.status)
        .bind(a.quorum)
        .bind(a.requested_at)
        .bind(a.expires_at)
        .bind(a.decided_at)
        .bind(a.used_at)
        .bind(a.version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((a.clone(), true))
    }

    /// Finds an approval.
    pub async fn approval_get(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(approval).transpose()
    }

    /// Lists approvals, optionally by status.
    pub async fn approval_list(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM approvals WHERE ($1 IS NULL OR status = $1) ORDER BY requested_at DESC LIMIT $2",
        )
        .bind(status.map(str::to_owned))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(approval).collect()
    }

    /// Counts approvals an identity requested since a time (anti-flood).
    pub async fn approval_count_since(
        &self,
        identity_id: &str,
        since: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM approvals WHERE identity_id = $1 AND requested_at >= $2",
        )
        .bind(identity_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Compare-and-set update: writes `a` only if the stored version is `expected_version`.
    /// Exactly one of several concurrent writers wins; the others get a conflict.
    pub async fn approval_update_cas(
        &self,
        a: &ApprovalRecord,
        expected_version: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE approvals SET body = $1, status = $2, decided_at = $3, used_at = $4, version = $5 \
             WHERE id = $6 AND version = $7",
        )
        .bind(a.body.to_string())
        .bind(&a.status)
        .bind(a.decided_at)
        .bind(a.used_at)
        .bind(expected_version.saturating_add(1))
        .bind(&a.id)
        .bind(expected_version)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "approval `{}` was changed by someone else",
                a.id
            )));
        }
        Ok(())
    }

    /// Marks pending approvals of an identity cancelled; returns how many.
    pub async fn approval_cancel_pending(
        &self,
        identity_id: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE approvals SET status = 'cancelled', decided_at = $1, version = version + 1 \
             WHERE identity_id = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(identity_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Stores or replaces a grant.
    pub async fn grant_upsert(&self, g: &GrantRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO grants (id, identity_id, body, status, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, status = excluded.status, expires_at = excluded.expires_at",
        )
        .bind(&g.id)
        .bind(&g.identity_id)
        .bind(g.body.to_string())
        .bind(&g.status)
        .bind(g.created_at)
        .bind(g.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Grants, optionally of one identity.
    pub async fn grant_list(
        &self,
        identity_id: Option<&str>,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM grants WHERE ($1 IS NULL OR identity_id = $1) ORDER BY created_at",
        )
        .bind(identity_id.map(str::to_owned))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant).collect()
    }

    /// Finds a grant.
    pub async fn grant_get(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(grant).transpose()
    }

    /// Deletes a grant (after it ended and its retention passed); true if it existed.
    pub async fn grant_delete(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM grants WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Generic JSON records.
impl Store {
    /// Creates or replaces a record.
    pub async fn kv_put(
        &self,
        kind: &str,
        id: &str,
        body: &serde_json::Value,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO kv_records (kind, id, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(kind)
        .bind(id)
        .bind(body.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reads a record.
    pub async fn kv_get(&self, kind: &str, id: &str) -> Result<Option<KvRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM kv_records WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(kv).transpose()
    }

    /// Lists records of a kind, oldest first.
    pub async fn kv_list(&self, kind: &str, limit: i64) -> Result<Vec<KvRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM kv_records WHERE kind = $1 ORDER BY created_at, id LIMIT $2",
        )
        .bind(kind)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(kv).collect()
    }

    /// Deletes a record; returns whether it existed.
    pub async fn kv_delete(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM kv_records WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Rows per multi-row audit `INSERT` (11 parameters each, well under every backend's limit).
pub const AUDIT_ROWS_PER_INSERT: usize = 64;

/// Chunk sizes of audit inserts, largest first. Only these sizes are used, so each
/// connection prepares at most three statement texts once and reuses them: with any
/// remainder size allowed, a group commit of n rows could prepare a new multi-row statement
/// (hundreds of placeholders; SQLite's parser then costs more than the inserts).
const AUDIT_CHUNK_SIZES: [usize; 3] = [AUDIT_ROWS_PER_INSERT, 8, 1];

/// `rows` cut into chunks of the sizes in [`AUDIT_CHUNK_SIZES`], in order.
fn audit_chunks(rows: &[AuditRow]) -> impl Iterator<Item = &[AuditRow]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = AUDIT_CHUNK_SIZES.into_iter().find(|&n| n <= rest.len())?;
        let (chunk, after) = rest.split_at_checked(size)?;
        rest = after;
        Some(chunk)
    })
}

/// `INSERT INTO audit_log (..) VALUES (..), (..), ..` for `rows` rows (one of
/// [`AUDIT_CHUNK_SIZES`]); each text is built once.
fn audit_insert_sql(rows: usize, anonymous: bool) -> std::sync::Arc<str> {
    const PREFIX: &str = "INSERT INTO audit_log (instance_id, seq, time_ms, prev_hash, hash, kind, actor_id, operation, decision, request_id, event) VALUES ";
    type Cell = std::sync::OnceLock<std::sync::Arc<str>>;
    static NUMBERED: [Cell; 3] = [Cell::new(), Cell::new(), Cell::new()];
    static ANONYMOUS: [Cell; 3] = [Cell::new(), Cell::new(), Cell::new()];
    let build = || multi_row_insert(PREFIX, 11, rows, anonymous).into();
    let cells = if anonymous { &ANONYMOUS } else { &NUMBERED };
    match AUDIT_CHUNK_SIZES
        .iter()
        .position(|&n| n == rows)
        .and_then(|i| cells.get(i))
    {
        Some(cell) => std::sync::Arc::clone(cell.get_or_init(build)),
        None => build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_chunks_use_only_the_fixed_sizes_and_keep_every_row_in_order() {
        let row = |seq: i64| AuditRow {
            instance_id: "i".into(),
            seq,
            time_ms: 0,
            prev_hash: Vec::new(),
            hash: Vec::new(),
            kind: "decision".into(),
            actor_id: None,
            operation: None,
            decision: None,
            request_id: None,
            event: String::new(),
        };
        for n in 0..300 {
            let rows: Vec<AuditRow> = (0..n).map(row).collect();
            let chunks: Vec<&[AuditRow]> = audit_chunks(&rows).collect();
            assert!(chunks.iter().all(|c| AUDIT_CHUNK_SIZES.contains(&c.len())));
            let seqs: Vec<i64> = chunks
                .iter()
                .flat_map(|c| c.iter().map(|r| r.seq))
                .collect();
            assert_eq!(seqs, (0..n).collect::<Vec<_>>());
            // At most 7 single-row and 7 eight-row inserts after the full chunks.
            assert!(chunks.len() <= n as usize / AUDIT_ROWS_PER_INSERT + 14);
        }
        let sql = audit_insert_sql(8, true);
        assert_eq!(sql.matches('?').count(), 8 * 11);
        assert!(std::sync::Arc::ptr_eq(&sql, &audit_insert_sql(8, true)));
    }
}
