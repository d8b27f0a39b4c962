//! Vault lifecycle routes: bulk import, reveal (off by default, audited first), rotation on
//! demand, and rotation reminders.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use steward_audit::{Actor, ActorKind, AuditEvent, EventKind};
use steward_gateway::problem::Problem;
use steward_gateway::rotation::{RotationPolicy, reminders, rotate_secret};
use steward_gateway::runtime::{Runtime, RuntimeError, new_id};
use steward_store::models::{SecretRecord, SecretVersion};
use zeroize::Zeroizing;

use crate::auth::AdminPrincipal;

type R = Result<Json<Value>, Problem>;

fn p(e: impl Into<RuntimeError>) -> Problem {
    e.into().to_problem()
}

/// Most secrets one import request may carry.
const MAX_IMPORT: usize = 5_000;

/// One item of `POST /admin/v1/secrets`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportItem {
    name: String,
    value_base64: String,
    #[serde(default)]
    rotation: Option<Value>,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// `POST /admin/v1/secrets` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportInput {
    items: Vec<ImportItem>,
}

/// `POST /admin/v1/secrets`: bulk import. New names are created in one transaction; names
/// that exist get a new version. One audit record (names and fingerprints) precedes it.
pub async fn secret_import(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<ImportInput>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    if input.items.len() > MAX_IMPORT {
        return Err(Problem::bad_request(format!(
            "at most {MAX_IMPORT} secrets per import request"
        )));
    }
    let mut decoded = Vec::with_capacity(input.items.len());
    let mut seen = std::collections::HashSet::new();
    for item in input.items {
        steward_core::name::validate(&item.name)
            .map_err(|e| Problem::bad_request(format!("secret name `{}`: {e}", item.name)))?;
        if !seen.insert(item.name.clone()) {
            return Err(Problem::bad_request(format!(
                "secret `{}` appears twice",
                item.name
            )));
        }
        let value =
            Zeroizing::new(STANDARD.decode(item.value_base64.as_bytes()).map_err(|_| {
                Problem::bad_request(format!(
                    "secret `{}`: `value_base64` is not valid base64",
                    item.name
                ))
            })?);
        if value.is_empty() {
            return Err(Problem::bad_request(format!(
                "secret `{}`: the value is empty",
                item.name
            )));
        }
        if let Some(r) = &item.rotation {
            RotationPolicy::from_json(r).map_err(p)?;
        }
        decoded.push((item.name, value, item.rotation, item.expires_at));
    }
    let listed: Vec<Value> = decoded
        .iter()
        .map(|(n, v, _, _)| json!({"name": n, "fingerprint": steward_scan::fingerprint(v)}))
        .collect();
    rt.audit_admin(
        &who.principal,
        "secret.import",
        "secrets",
        json!({"count": listed.len(), "secrets": listed}),
    )
    .await
    .map_err(p)?;

    rt.refresh_keyring_if_rotated().await.map_err(p)?;
    let keyring = rt.keyring();
    let master = keyring.current();
    let now = rt.now_ms();
    let existing: std::collections::HashSet<String> = rt
        .store
        .secret_list()
        .await
        .map_err(p)?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut fresh = Vec::new();
    let mut updated = 0usize;
    for (name, value, rotation, expires_at) in decoded {
        if existing.contains(&name) {
            rt.put_secret(&name, &value, rotation, expires_at, None)
                .await
                .map_err(p)?;
            updated += 1;
            continue;
        }
        let id = new_id("sec");
        let sealed = steward_vault::seal(master, &id, 1, &value).map_err(p)?;
        let next_rotation_at = rotation
            .as_ref()
            .and_then(|r| steward_gateway::rotation::next_rotation_at(r, now));
        fresh.push((
            SecretRecord {
                id: id.clone(),
                name,
                current_version: 1,
                fingerprint: steward_scan::fingerprint(&value),
                rotation,
                created_at: now,
                rotated_at: None,
                expires_at,
                next_rotation_at,
                last_rotation_error: None,
            },
            SecretVersion {
                secret_id: id,
                version: 1,
                key_version: i64::from(master.version()),
                sealed: sealed.to_bytes(),
                created_at: now,
                retire_at: None,
            },
        ));
    }
    rt.store.secret_create_many(&fresh).await.map_err(p)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"created": fresh.len(), "updated": updated})),
    ))
}

/// `POST /admin/v1/secrets/{name}/reveal`: the plaintext, only when `[vault] allow_reveal`
/// is on. The audit record is durable before the value leaves.
pub async fn secret_reveal(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(name): Path<String>,
) -> R {
    if !rt.settings.allow_reveal {
        return Err(Problem::forbidden(
            "revealing secret values is disabled; set `[vault] allow_reveal = true` to enable it",
        ));
    }
    let record = rt
        .store
        .secret_by_name(&name)
        .await
        .map_err(p)?
        .ok_or_else(|| Problem::not_found(format!("secret `{name}` does not exist")))?;
    let mut event = AuditEvent::new(
        EventKind::SecretUse,
        Actor::new(ActorKind::Admin, who.principal.clone()),
    );
    event.operation = Some("secret.reveal".into());
    event.resource = Some(name.clone());
    event.detail =
        json!({"secret": name, "version": record.current_version, "admin_token": who.token_id});
    rt.audit(event).await.map_err(p)?;
    let (record, value) = rt.secret_value(&name).await.map_err(p)?;
    let encoded = Zeroizing::new(STANDARD.encode(value.expose_secret()));
    Ok(Json(
        json!({"name": record.name, "version": record.current_version, "value_base64": encoded.as_str()}),
    ))
}

/// `POST /admin/v1/secrets/{name}/rotate`: runs the secret's rotation provider now.
pub async fn secret_rotate(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(name): Path<String>,
) -> R {
    let record = rotate_secret(
        &rt,
        &name,
        Actor::new(ActorKind::Admin, who.principal.clone()),
    )
    .await
    .map_err(p)?;
    Ok(Json(serde_json::to_value(record).unwrap_or_default()))
}

/// `GET /admin/v1/vault/reminders`: secrets due for rotation, overdue, failing or expiring.
pub async fn vault_reminders(State(rt): State<Arc<Runtime>>) -> R {
    let now = rt.now_ms();
    let secrets = rt.store.secret_list().await.map_err(p)?;
    let keys = rt.store.secret_key_versions().await.map_err(p)?;
    Ok(Json(json!({
        "rotation": reminders(&secrets, now),
        "expiring": expiring(&secrets, now),
        "master_key_version": rt.keyring().current().version(),
        "sealed_versions_by_master_key": keys.iter().map(|(k, n)| json!({"key_version": k, "count": n})).collect::<Vec<_>>(),
    })))
}

/// Secrets whose `expires_at` is within 14 days (or past).
pub fn expiring(secrets: &[SecretRecord], now: i64) -> Vec<Value> {
    secrets
        .iter()
        .filter_map(|s| {
            let exp = s.expires_at?;
            (exp - now < 14 * 86_400_000)
                .then(|| json!({"secret": s.name, "expires_at": exp, "expired": exp <= now}))
        })
        .collect()
}
