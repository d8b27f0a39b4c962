//! Secret rotation: the per-secret policy (interval, grace overlap, provider), the providers
//! (PostgreSQL role password, signed HTTP webhook, manual with reminders) and one rotation run.
//!
//! A rotation run is audited twice: an intent record before anything changes and a result
//! record after (the new version, or the error). The new value is stored as a new version
//! *before* it is applied to a PostgreSQL role, so a value in effect is never lost: if the
//! `ALTER ROLE` fails, the previous value is written back as a further version.
//!
//! Grace: the previous version stays readable (its `retire_at` is set `grace_secs` ahead). A
//! PostgreSQL role has exactly one password, so for `postgres_role` the old password stops
//! working when the `ALTER ROLE` commits; grace there only covers readers of the vault.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward_audit::{Actor, AuditEvent, EventKind};
use steward_store::models::SecretRecord;
use zeroize::Zeroizing;

use crate::runtime::{Runtime, RuntimeError, random_bytes};

/// Default reminder lead time for manual rotation: 7 days.
const DEFAULT_REMIND_BEFORE_SECS: u64 = 7 * 86_400;
/// First retry delay after a failed rotation; doubles per failure up to [`MAX_BACKOFF_MS`].
const BASE_BACKOFF_MS: i64 = 2_000;
/// Longest delay between retries of a failing rotation.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// Largest accepted webhook response.
const MAX_WEBHOOK_RESPONSE: usize = 64 * 1024;

/// A secret's rotation policy, stored as JSON beside the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicy {
    /// Seconds between rotations (for `manual`: until the value is due).
    pub interval_secs: u64,
    /// Seconds the previous version stays readable after a rotation.
    #[serde(default)]
    pub grace_secs: u64,
    /// Where the new value comes from.
    pub provider: RotationProvider,
}

/// Where a rotated value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RotationProvider {
    /// A PostgreSQL role's password, changed with `ALTER ROLE … PASSWORD`.
    PostgresRole {
        /// Vault secret holding the admin connection URL (it carries a password).
        #[serde(default)]
        url_secret: Option<String>,
        /// Admin connection URL without a password (for trust or peer setups).
        #[serde(default)]
        dsn: Option<String>,
        /// The role whose password rotates.
        role: String,
    },
    /// An endpoint that returns the new value as `{"value": "…"}`; requests are signed with
    /// `Steward-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    Webhook {
        /// The endpoint.
        url: String,
        /// Vault secret holding the HMAC key.
        hmac_secret: String,
    },
    /// A human rotates; Steward reminds before the value is due.
    Manual {
        /// Seconds before the due time that reminders start.
        #[serde(default = "default_remind_before")]
        remind_before_secs: u64,
    },
}

fn default_remind_before() -> u64 {
    DEFAULT_REMIND_BEFORE_SECS
}

impl RotationProvider {
    /// A short name for audit records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PostgresRole { .. } => "postgres_role",
            Self::Webhook { .. } => "webhook",
            Self::Manual { .. } => "manual",
        }
    }
}

impl RotationPolicy {
    /// Parses and checks a stored or submitted policy.
    pub fn from_json(value: &Value) -> Result<Self, RuntimeError> {
        let policy: Self = serde_json::from_value(value.clone())
            .map_err(|e| RuntimeError::Invalid(format!("rotation policy: {e}")))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the policy's fields; a DSN given inline must not carry a password.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.interval_secs == 0 {
            return Err(RuntimeError::Invalid(
                "rotation policy: `interval_secs` must be at least 1".into(),
            ));
        }
        match &self.provider {
            RotationProvider::PostgresRole {
                url_secret,
                dsn,
                role,
            } => {
                crate::pg_roles::check_role_name(role)?;
                match (url_secret, dsn) {
                    (Some(_), None) => {}
                    (None, Some(dsn)) => {
                        let url = url::Url::parse(dsn).map_err(|e| RuntimeError::Invalid(format!("rotation policy: dsn: {e}")))?;
                        if url.password().is_some() {
                            return Err(RuntimeError::Invalid(
                                "rotation policy: `dsn` must not contain a password; store the URL as a secret and name it in `url_secret`".into(),
                            ));
                        }
                    }
                    _ => return Err(RuntimeError::Invalid("rotation policy: postgres_role needs exactly one of `url_secret` and `dsn`".into())),
                }
            }
            RotationProvider::Webhook { url, .. } => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| RuntimeError::Invalid(format!("rotation policy: url: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(RuntimeError::Invalid(
                        "rotation policy: webhook url must be http(s)".into(),
                    ));
                }
            }
            RotationProvider::Manual { .. } => {}
        }
        Ok(())
    }
}

/// When a secret with `policy` (stored JSON), rotated at `now`, is next due.
pub fn next_rotation_at(policy: &Value, now: i64) -> Option<i64> {
    let policy: RotationPolicy = serde_json::from_value(policy.clone()).ok()?;
    let interval_ms = i64::try_from(policy.interval_secs)
        .ok()?
        .checked_mul(1000)?;
    Some(now.saturating_add(interval_ms))
}

/// A reminder that a secret is due (or overdue) for manual rotation, or has expired.
#[derive(Debug, Clone, Serialize)]
pub struct RotationReminder {
    /// Secret name.
    pub secret: String,
    /// When the value is due, in ms.
    pub due_at: i64,
    /// Seconds until due (negative when overdue).
    pub due_in_secs: i64,
    /// The provider kind.
    pub provider: &'static str,
    /// The last rotation error, if the last automatic attempt failed.
    pub last_rotation_error: Option<String>,
}

/// Secrets whose rotation is due within their reminder window (manual), overdue (any
/// provider), or whose last automatic rotation failed.
pub fn reminders(secrets: &[SecretRecord], now: i64) -> Vec<RotationReminder> {
    let mut out = Vec::new();
    for s in secrets {
        let Some(policy) = s
            .rotation
            .as_ref()
            .and_then(|p| RotationPolicy::from_json(p).ok())
        else {
            continue;
        };
        let Some(due_at) = s.next_rotation_at else {
            continue;
        };
        let window_ms = match &policy.provider {
            RotationProvider::Manual { remind_before_secs } => i64::try_from(*remind_before_secs)
                .unwrap_or(i64::MAX / 2000)
                .saturating_mul(1000),
            _ => 0,
        };
        if due_at.saturating_sub(window_ms) <= now || s.last_rotation_error.is_some() {
            out.push(RotationReminder {
                secret: s.name.clone(),
                due_at,
                due_in_secs: due_at.saturating_sub(now) / 1000,
                provider: policy.provider.kind(),
                last_rotation_error: s.last_rotation_error.clone(),
            });
        }
    }
    out
}

/// The retry delay after `failures` consecutive failed attempts.
pub fn backoff_ms(failures: u32) -> i64 {
    BASE_BACKOFF_MS
        .saturating_mul(1i64 << failures.min(20))
        .min(MAX_BACKOFF_MS)
}

/// Rotates the secret `name` now, by its policy's provider. `actor` is the admin who asked,
/// or the system scheduler. Returns the updated record.
pub async fn rotate_secret(
    rt: &Runtime,
    name: &str,
    actor: Actor,
) -> Result<SecretRecord, RuntimeError> {
    let record = rt
        .store
        .secret_by_name(name)
        .await?
        .ok_or_else(|| RuntimeError::NotFound(format!("secret `{name}` does not exist")))?;
    let policy_json = record
        .rotation
        .clone()
        .ok_or_else(|| RuntimeError::Invalid(format!("secret `{name}` has no rotation policy")))?;
    let policy = RotationPolicy::from_json(&policy_json)?;
    if let RotationProvider::Manual { .. } = policy.provider {
        return Err(RuntimeError::Invalid(format!(
            "secret `{name}` rotates manually: set a new value with `steward secret set {name}`"
        )));
    }
    let mut intent = AuditEvent::new(EventKind::SecretRotation, actor.clone());
    intent.operation = Some("secret.rotate".into());
    intent.resource = Some(name.to_owned());
    intent.detail = json!({"phase": "start", "provider": policy.provider.kind(), "from_version": record.current_version});
    rt.audit(intent).await?;

    let result = run_provider(rt, &record, &policy).await;
    let now = rt.now_ms();
    let mut done = AuditEvent::new(EventKind::SecretRotation, actor);
    done.operation = Some("secret.rotate".into());
    done.resource = Some(name.to_owned());
    match result {
        Ok(updated) => {
            let _ = rt.store.kv_delete("rotation_state", &record.id).await;
            metrics::counter!("steward_secret_rotations_total", "result" => "ok").increment(1);
            done.detail = json!({"phase": "done", "provider": policy.provider.kind(), "version": updated.current_version, "fingerprint": updated.fingerprint});
            rt.audit(done).await?;
            Ok(updated)
        }
        Err(e) => {
            metrics::counter!("steward_secret_rotations_total", "result" => "error").increment(1);
            let failures = rt
                .store
                .kv_get("rotation_state", &record.id)
                .await
                .ok()
                .flatten()
                .and_then(|r| r.body.get("failures").and_then(Value::as_u64))
                .unwrap_or(0)
                .saturating_add(1);
            let failures_u32 = u32::try_from(failures).unwrap_or(u32::MAX);
            let message = e.to_string();
            tracing::warn!(secret = %name, error = %message, failures, "secret rotation failed");
            let mut latest = rt.store.secret_by_name(name).await?.unwrap_or(record);
            latest.last_rotation_error = Some(message.clone());
            latest.next_rotation_at = Some(now.saturating_add(backoff_ms(failures_u32)));
            rt.store.secret_update_meta(&latest).await?;
            rt.store
                .kv_put(
                    "rotation_state",
                    &latest.id,
                    &json!({"failures": failures, "last_error_at": now}),
                    now,
                )
                .await?;
            done.detail = json!({"phase": "failed", "provider": policy.provider.kind(), "error": message, "failures": failures});
            rt.audit(done).await?;
            Err(e)
        }
    }
}

async fn run_provider(
    rt: &Runtime,
    record: &SecretRecord,
    policy: &RotationPolicy,
) -> Result<SecretRecord, RuntimeError> {
    let grace_ms = Some(
        i64::try_from(policy.grace_secs)
            .unwrap_or(i64::MAX / 2000)
            .saturating_mul(1000),
    );
    match &policy.provider {
        RotationProvider::PostgresRole {
            url_secret,
            dsn,
            role,
        } => {
            let admin_dsn = admin_dsn(rt, url_secret.as_deref(), dsn.as_deref()).await?;
            let (_, previous) = rt.secret_value(&record.name).await?;
            let previous = Zeroizing::new(previous.expose_secret().to_vec());
            let password = crate::pg_roles::generate_password();
            // Store first: a value in effect must always be in the vault.
            let updated = rt
                .put_secret(
                    &record.name,
                    password.as_bytes(),
                    None,
                    record.expires_at,
                    grace_ms,
                )
                .await?;
            if let Err(e) = crate::pg_roles::set_password(&admin_dsn, role, &password).await {
                // The role still has the old password: make it current again.
                rt.put_secret(&record.name, &previous, None, record.expires_at, Some(0))
                    .await?;
                return Err(e);
            }
            Ok(updated)
        }
        RotationProvider::Webhook { url, hmac_secret } => {
            let value = call_webhook(rt, record, url, hmac_secret).await?;
            rt.put_secret(&record.name, &value, None, record.expires_at, grace_ms)
                .await
        }
        RotationProvider::Manual { .. } => Err(RuntimeError::Invalid("manual rotation".into())),
    }
}

async fn admin_dsn(
    rt: &Runtime,
    url_secret: Option<&str>,
    dsn: Option<&str>,
) -> Result<Zeroizing<String>, RuntimeError> {
    match (url_secret, dsn) {
        (Some(secret), _) => {
            let (_, value) = rt.secret_value(secret).await?;
            let text = std::str::from_utf8(value.expose_secret()).map_err(|_| {
                RuntimeError::Invalid(format!("secret `{secret}` is not a UTF-8 URL"))
            })?;
            Ok(Zeroizing::new(text.to_owned()))
        }
        (None, Some(dsn)) => Ok(Zeroizing::new(dsn.to_owned())),
        (None, None) => Err(RuntimeError::Invalid(
            "postgres_role needs `url_secret` or `dsn`".into(),
        )),
    }
}

/// HMAC-SHA256 of `body` under `key`, as the `Steward-Signature` header value.
pub fn signature_header(key: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    format!(
        "sha256={}",
        hex::encode(aws_lc_rs::hmac::sign(&key, body).as_ref())
    )
}

async fn call_webhook(
    rt: &Runtime,
    record: &SecretRecord,
    url: &str,
    hmac_secret: &str,
) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
    let (_, key) = rt.secret_value(hmac_secret).await?;
    let now = rt.now_ms();
    let body = serde_json::to_vec(&json!({
        "secret": record.name,
        "current_version": record.current_version,
        "next_version": record.current_version.saturating_add(1),
        "requested_at": now,
        "nonce": hex::encode(random_bytes::<16>()),
    }))
    .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let signature = signature_header(key.expose_secret(), &body);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(
            rt.settings.request_timeout_ms.min(30_000),
        ))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| RuntimeError::External(format!("webhook client: {e}")))?;
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("steward-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            RuntimeError::External(format!("webhook `{url}` unreachable: {}", e.without_url()))
        })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(RuntimeError::External(format!(
            "webhook `{url}` answered {status}"
        )));
    }
    let bytes = Zeroizing::new(
        resp.bytes()
            .await
            .map_err(|e| RuntimeError::External(format!("webhook `{url}`: {}", e.without_url())))?
            .to_vec(),
    );
    if bytes.len() > MAX_WEBHOOK_RESPONSE {
        return Err(RuntimeError::External(format!(
            "webhook `{url}` answered more than {MAX_WEBHOOK_RESPONSE} bytes"
        )));
    }
    #[derive(Deserialize)]
    struct Answer {
        value: String,
    }
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| {
        RuntimeError::External(format!(
            "webhook `{url}` did not answer `{{\"value\": \"…\"}}`"
        ))
    })?;
    // Moved (not copied) into zeroizing memory.
    let value = Zeroizing::new(answer.value.into_bytes());
    if value.is_empty() {
        return Err(RuntimeError::External(format!(
            "webhook `{url}` returned an empty value"
        )));
    }
    Ok(value)
}

/// Runs every automatic rotation that is due; returns how many were attempted. Called by the
/// background scheduler.
pub async fn run_due(rt: &Runtime) -> Result<usize, RuntimeError> {
    let now = rt.now_ms();
    let mut attempted = 0;
    for s in rt.store.secret_list().await? {
        let Some(policy) = s
            .rotation
            .as_ref()
            .and_then(|p| RotationPolicy::from_json(p).ok())
        else {
            continue;
        };
        if let RotationProvider::Manual { .. } = policy.provider {
            continue;
        }
        let due = match s.next_rotation_at {
            Some(at) => at <= now,
            None => true,
        };
        if !due {
            continue;
        }
        attempted += 1;
        // Errors are recorded on the secret and audited by `rotate_secret`.
        let _ = rotate_secret(rt, &s.name, Actor::system()).await;
    }
    Ok(attempted)
}

/// Publishes rotation and expiry gauges for the secrets that have a rotation policy or an
/// expiry (plain secrets get none, so a large vault does not flood `/metrics`).
pub async fn publish_gauges(rt: &Runtime) -> Result<(), RuntimeError> {
    let now = rt.now_ms();
    let secrets = rt.store.secret_list().await?;
    for s in &secrets {
        if let Some(due) = s.next_rotation_at {
            metrics::gauge!("steward_secret_rotation_due_seconds", "secret" => s.name.clone())
                .set((due.saturating_sub(now) / 1000) as f64);
        }
        if let Some(exp) = s.expires_at {
            metrics::gauge!("steward_secret_expires_in_seconds", "secret" => s.name.clone())
                .set((exp.saturating_sub(now) / 1000) as f64);
        }
        if s.rotation.is_some() {
            metrics::gauge!("steward_secret_rotation_failing", "secret" => s.name.clone()).set(
                if s.last_rotation_error.is_some() {
                    1.0
                } else {
                    0.0
                },
            );
        }
    }
    metrics::gauge!("steward_secret_rotation_reminders").set(reminders(&secrets, now).len() as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_validate() {
        let p = RotationPolicy::from_json(&json!({"interval_secs": 60, "grace_secs": 5, "provider": {"webhook": {"url": "https://x.example/rotate", "hmac_secret": "k"}}})).unwrap();
        assert_eq!(p.provider.kind(), "webhook");
        let m =
            RotationPolicy::from_json(&json!({"interval_secs": 60, "provider": {"manual": {}}}))
                .unwrap();
        assert_eq!(
            m.provider,
            RotationProvider::Manual {
                remind_before_secs: DEFAULT_REMIND_BEFORE_SECS
            }
        );
        assert!(
            RotationPolicy::from_json(&json!({"interval_secs": 0, "provider": {"manual": {}}}))
                .is_err()
        );
        assert!(RotationPolicy::from_json(&json!({"interval_secs": 1, "provider": {"postgres_role": {"role": "app", "dsn": "postgres://u:pw@h/db"}}})).is_err());
        assert!(
            RotationPolicy::from_json(
                &json!({"interval_secs": 1, "provider": {"postgres_role": {"role": "app"}}})
            )
            .is_err()
        );
        assert!(RotationPolicy::from_json(&json!({"interval_secs": 1, "provider": {"postgres_role": {"role": "a\"b", "url_secret": "s"}}})).is_err());
        RotationPolicy::from_json(&json!({"interval_secs": 1, "provider": {"postgres_role": {"role": "app_rw", "url_secret": "pg-admin"}}})).unwrap();
        assert!(
            RotationPolicy::from_json(
                &json!({"interval_secs": 1, "extra": 1, "provider": {"manual": {}}})
            )
            .is_err()
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(0), 2_000);
        assert_eq!(backoff_ms(1), 4_000);
        assert_eq!(backoff_ms(3), 16_000);
        assert_eq!(backoff_ms(40), MAX_BACKOFF_MS);
    }

    #[test]
    fn signature_matches_reference_hmac() {
        // RFC 4231 test case 2.
        let sig = signature_header(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn reminders_cover_manual_window_and_failures() {
        let base = SecretRecord {
            id: "sec_1".into(),
            name: "a".into(),
            current_version: 1,
            fingerprint: String::new(),
            rotation: Some(
                json!({"interval_secs": 100, "provider": {"manual": {"remind_before_secs": 10}}}),
            ),
            created_at: 0,
            rotated_at: None,
            expires_at: None,
            next_rotation_at: Some(100_000),
            last_rotation_error: None,
        };
        assert!(reminders(std::slice::from_ref(&base), 80_000).is_empty());
        let r = reminders(std::slice::from_ref(&base), 95_000);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].due_in_secs, 5);
        let mut failing = base.clone();
        failing.rotation = Some(
            json!({"interval_secs": 100, "provider": {"webhook": {"url": "http://h/x", "hmac_secret": "k"}}}),
        );
        failing.last_rotation_error = Some("boom".into());
        assert_eq!(reminders(&[failing], 0).len(), 1);
    }
}
