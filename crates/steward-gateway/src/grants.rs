//! Time-bound grants (just-in-time elevation, "approve similar") as policy inputs.

use serde::{Deserialize, Serialize};
use steward_core::OperationName;
use steward_store::models::GrantRecord;

/// What a grant record's body holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GrantBody {
    /// Operations granted, `service:operation`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Whole services granted.
    #[serde(default)]
    pub services: Vec<String>,
    /// Argument constraints (approve similar).
    #[serde(default)]
    pub arg_equals: std::collections::BTreeMap<String, serde_json::Value>,
    /// Why it was requested.
    #[serde(default)]
    pub justification: String,
    /// Who approved it.
    #[serde(default)]
    pub approved_by: Vec<String>,
}

/// Converts a stored grant into the policy engine's form; the expiry is embedded so an
/// expired grant stops matching even if nothing removes it.
pub fn to_policy_grant(g: &GrantRecord) -> Result<steward_policy::Grant, String> {
    let body: GrantBody = serde_json::from_value(g.body.clone()).map_err(|e| e.to_string())?;
    let operations = body
        .operations
        .iter()
        .map(|o| o.parse::<OperationName>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(steward_policy::Grant {
        id: g.id.clone(),
        identity_id: g.identity_id.clone(),
        operations,
        services: body.services,
        expires_at: steward_core::time::from_millis(g.expires_at),
        arg_equals: body.arg_equals,
    })
}
