//! Tool pinning against rug-pulls: the first listing of an MCP service pins a hash of every
//! tool's definition (name, description, input schema); later changes and additions are
//! quarantined (hidden and blocked) until an admin approves them.
//!
//! Pins live in the generic `kv_records` table, kind [`PIN_KIND`], id `<service>/<tool>`.
//! A marker of kind [`PINSET_KIND`] records that a service's first listing happened, so a
//! tool that appears later is recognised as new rather than pinned silently.
//!
//! The policy catalog of an MCP service is built from its approved pins: operation
//! `<service>:<tool>`, class from the tool's annotations (`readOnlyHint` read,
//! `destructiveHint` delete, else write; `class_overrides` win), and typed arguments
//! from the input schema's top-level properties (`string`, `integer`, `boolean`, arrays
//! of strings or integers; other types are not exposed to policy).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward_core::OperationClass;
use steward_policy::{ArgDef, ArgType, OperationDef};
use steward_store::Store;

use super::jsonrpc::canonical;
use crate::runtime::{RuntimeError, sha256_hex};
use crate::service::ServiceSpec;

/// `kv_records` kind of a tool pin.
pub const PIN_KIND: &str = "mcp_pin";
/// `kv_records` kind of the "first listing done" marker of a service.
pub const PINSET_KIND: &str = "mcp_pinset";
const MAX_PINS: i64 = 100_000;

/// One version of a tool's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinnedVersion {
    /// SHA-256 over the canonical name, description and input schema.
    pub hash: String,
    /// The tool as the upstream listed it.
    pub definition: Value,
    /// When Steward first saw this version (ms).
    pub seen_at: i64,
}

/// A tool's pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinRecord {
    /// The service.
    pub service: String,
    /// The tool's upstream name.
    pub tool: String,
    /// The approved version; absent for a tool that appeared after the first listing.
    pub approved: Option<PinnedVersion>,
    /// The upstream's current version when it differs from the approved one.
    pub pending: Option<PinnedVersion>,
    /// Who approved the current version (`first-listing` for the initial pin).
    #[serde(default)]
    pub approved_by: Option<String>,
    /// When (ms).
    #[serde(default)]
    pub approved_at: Option<i64>,
}

impl PinRecord {
    /// `approved`, `changed` (quarantined: definition differs) or `new` (quarantined).
    pub fn status(&self) -> &'static str {
        match (&self.approved, &self.pending) {
            (Some(_), None) => "approved",
            (Some(_), Some(_)) => "changed",
            (None, _) => "new",
        }
    }
}

/// The hash that pins a tool: name, description and input schema, canonically encoded.
pub fn definition_hash(tool: &Value) -> String {
    let pinned = json!({
        "name": tool.get("name").cloned().unwrap_or(Value::Null),
        "description": tool.get("description").cloned().unwrap_or(Value::Null),
        "inputSchema": tool.get("inputSchema").cloned().unwrap_or(Value::Null),
    });
    sha256_hex(canonical(&pinned).as_bytes())
}

fn pin_id(service: &str, tool: &str) -> String {
    format!("{service}/{tool}")
}

/// Every pin of a service (all services when `None`), by tool name.
pub async fn load(
    store: &Store,
    service: Option<&str>,
) -> Result<BTreeMap<(String, String), PinRecord>, RuntimeError> {
    let mut out = BTreeMap::new();
    for record in store.kv_list(PIN_KIND, MAX_PINS).await? {
        match serde_json::from_value::<PinRecord>(record.body) {
            Ok(pin) if service.is_none_or(|s| s == pin.service) => {
                out.insert((pin.service.clone(), pin.tool.clone()), pin);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(pin = %record.id, error = %e, "skipping a malformed tool pin"),
        }
    }
    Ok(out)
}

async fn save(store: &Store, pin: &PinRecord, now: i64) -> Result<(), RuntimeError> {
    let body = serde_json::to_value(pin).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    store
        .kv_put(PIN_KIND, &pin_id(&pin.service, &pin.tool), &body, now)
        .await?;
    Ok(())
}

/// What a listing revealed.
#[derive(Debug, Default)]
pub struct Observed {
    /// Tools whose current definition is the approved one, by upstream name.
    pub usable: BTreeMap<String, Value>,
    /// Tools held back (new or changed).
    pub quarantined: Vec<String>,
    /// Whether pins were written (the policy catalog must be rebuilt).
    pub changed: bool,
}

/// Compares a fresh listing with the pins, pinning on first sight and quarantining changes.
pub async fn observe(
    store: &Store,
    service: &str,
    tools: &[Value],
    now: i64,
) -> Result<Observed, RuntimeError> {
    let pins = load(store, Some(service)).await?;
    let first_listing = store.kv_get(PINSET_KIND, service).await?.is_none();
    let mut observed = Observed::default();
    for tool in tools {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let version = PinnedVersion {
            hash: definition_hash(tool),
            definition: tool.clone(),
            seen_at: now,
        };
        match pins.get(&(service.to_owned(), name.to_owned())) {
            None if first_listing => {
                let pin = PinRecord {
                    service: service.to_owned(),
                    tool: name.to_owned(),
                    approved: Some(version),
                    pending: None,
                    approved_by: Some("first-listing".into()),
                    approved_at: Some(now),
                };
                save(store, &pin, now).await?;
                observed.changed = true;
                observed.usable.insert(name.to_owned(), tool.clone());
            }
            None => {
                tracing::warn!(mcp.service = %service, tool = %name, "new MCP tool quarantined until approved");
                let pin = PinRecord {
                    service: service.to_owned(),
                    tool: name.to_owned(),
                    approved: None,
                    pending: Some(version),
                    approved_by: None,
                    approved_at: None,
                };
                save(store, &pin, now).await?;
                observed.changed = true;
                observed.quarantined.push(name.to_owned());
            }
            Some(pin)
                if pin
                    .approved
                    .as_ref()
                    .is_some_and(|a| a.hash == version.hash) =>
            {
                if pin.pending.is_some() {
                    // The upstream went back to the approved definition.
                    let mut pin = pin.clone();
                    pin.pending = None;
                    save(store, &pin, now).await?;
                    observed.changed = true;
                }
                observed.usable.insert(name.to_owned(), tool.clone());
            }
            Some(pin) => {
                if pin.pending.as_ref().is_none_or(|p| p.hash != version.hash) {
                    tracing::warn!(mcp.service = %service, tool = %name, "MCP tool definition changed; quarantined until approved");
                    let mut pin = pin.clone();
                    pin.pending = Some(version);
                    save(store, &pin, now).await?;
                    observed.changed = true;
                }
                observed.quarantined.push(name.to_owned());
            }
        }
    }
    if first_listing {
        store
            .kv_put(
                PINSET_KIND,
                service,
                &json!({"first_listing_at": now, "tools": tools.len()}),
                now,
            )
            .await?;
        observed.changed = true;
    }
    Ok(observed)
}

/// Approves a quarantined tool's pending definition; returns the updated pin.
pub async fn approve(
    store: &Store,
    service: &str,
    tool: &str,
    who: &str,
    expected_hash: Option<&str>,
    now: i64,
) -> Result<PinRecord, RuntimeError> {
    let mut pin = load(store, Some(service))
        .await?
        .remove(&(service.to_owned(), tool.to_owned()))
        .ok_or_else(|| {
            RuntimeError::NotFound(format!("no pin for tool `{tool}` of service `{service}`"))
        })?;
    let pending = pin.pending.take().ok_or_else(|| {
        RuntimeError::Conflict(format!(
            "tool `{service}__{tool}` has no change awaiting approval"
        ))
    })?;
    if let Some(expected) = expected_hash
        && expected != pending.hash
    {
        return Err(RuntimeError::Conflict(format!(
            "tool `{service}__{tool}` changed again since it was reviewed (now {})",
            pending.hash
        )));
    }
    pin.approved = Some(pending);
    pin.approved_by = Some(who.to_owned());
    pin.approved_at = Some(now);
    save(store, &pin, now).await?;
    Ok(pin)
}

/// The class of a tool from its annotations, unless the service overrides it.
pub fn class_of(tool: &Value, overrides: &BTreeMap<String, OperationClass>) -> OperationClass {
    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
    if let Some(class) = overrides.get(name) {
        return *class;
    }
    let hint = |k: &str| {
        tool.get("annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_bool)
            == Some(true)
    };
    if hint("readOnlyHint") {
        OperationClass::Read
    } else if hint("destructiveHint") {
        OperationClass::Delete
    } else {
        OperationClass::Write
    }
}

/// Typed policy arguments from an input schema's top-level properties.
pub fn policy_args(tool: &Value) -> Vec<ArgDef> {
    let schema = tool.get("inputSchema");
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let mut args = Vec::new();
    for (name, prop) in props {
        let ty = prop.get("type").and_then(Value::as_str);
        let arg_type = match ty {
            Some("string") => Some(ArgType::String),
            Some("integer") => Some(ArgType::Long),
            Some("boolean") => Some(ArgType::Bool),
            Some("array") => match prop
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str)
            {
                Some("string") => Some(ArgType::SetOfString),
                Some("integer") => Some(ArgType::SetOfLong),
                _ => None,
            },
            _ => None,
        };
        if let Some(arg_type) = arg_type {
            args.push(ArgDef {
                name: name.clone(),
                arg_type,
                optional: !required.contains(&name.as_str()),
            });
        }
    }
    args
}

/// The policy operations of an MCP service: its approved tools, then `prompts/get` and
/// `resources/read` (see `content`).
pub async fn catalog_operations(
    store: &Store,
    spec: &ServiceSpec,
) -> Result<Vec<OperationDef>, RuntimeError> {
    let pins = load(store, Some(&spec.name)).await?;
    let mut operations: Vec<OperationDef> = pins
        .values()
        .filter_map(|pin| pin.approved.as_ref())
        .map(|v| OperationDef {
            name: v
                .definition
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            class: class_of(&v.definition, &spec.class_overrides),
            args: policy_args(&v.definition),
        })
        .filter(|op| !op.name.is_empty() && !super::content::is_reserved(&op.name))
        .collect();
    operations.extend(super::content::catalog_operations(spec));
    Ok(operations)
}

/// Text with invisible and bidirectional-control characters shown as `<U+XXXX>`.
pub fn reveal_invisible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let cp = c as u32;
        let invisible = matches!(cp,
            0x00..=0x08 | 0x0B..=0x0C | 0x0E..=0x1F | 0x7F..=0x9F
            | 0xAD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1D173..=0x1D17A | 0xE0000..=0xE007F | 0xE0100..=0xE01EF);
        if invisible {
            out.push_str(&format!("<U+{cp:04X}>"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A line diff of two tool definitions (pretty JSON), invisible characters made visible.
pub fn diff_text(old: Option<&Value>, new: Option<&Value>) -> String {
    let render = |v: Option<&Value>| -> Vec<String> {
        v.map(|v| {
            serde_json::to_string_pretty(
                &serde_json::from_str::<Value>(&canonical(v)).unwrap_or(Value::Null),
            )
            .unwrap_or_default()
        })
        .unwrap_or_default()
        .lines()
        .map(reveal_invisible)
        .collect()
    };
    let a = render(old);
    let b = render(new);
    // Longest common subsequence; definitions are small.
    let n = a.len();
    let m = b.len();
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if a.get(i) == b.get(j) {
                lcs.get(i + 1)
                    .and_then(|r| r.get(j + 1))
                    .copied()
                    .unwrap_or(0)
                    + 1
            } else {
                let down = lcs.get(i + 1).and_then(|r| r.get(j)).copied().unwrap_or(0);
                let right = lcs.get(i).and_then(|r| r.get(j + 1)).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = v;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < n || j < m {
        let (la, lb) = (a.get(i), b.get(j));
        if i < n && j < m && la == lb {
            out.push_str(&format!(
                "  {}\n",
                la.map(String::as_str).unwrap_or_default()
            ));
            i += 1;
            j += 1;
        } else if j < m && (i >= n || at(i, j + 1) > at(i + 1, j)) {
            out.push_str(&format!(
                "+ {}\n",
                lb.map(String::as_str).unwrap_or_default()
            ));
            j += 1;
        } else {
            out.push_str(&format!(
                "- {}\n",
                la.map(String::as_str).unwrap_or_default()
            ));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_name_description_and_schema_only() {
        let a = json!({"name": "t", "description": "d", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}});
        let mut b = a.clone();
        b["annotations"] = json!({});
        assert_eq!(definition_hash(&a), definition_hash(&b));
        b["description"] = json!("d\u{200b}");
        assert_ne!(definition_hash(&a), definition_hash(&b));
    }

    #[test]
    fn classes_come_from_annotations_unless_overridden() {
        let mut overrides = BTreeMap::new();
        assert_eq!(
            class_of(
                &json!({"name": "a", "annotations": {"readOnlyHint": true}}),
                &overrides
            ),
            OperationClass::Read
        );
        assert_eq!(
            class_of(
                &json!({"name": "a", "annotations": {"destructiveHint": true}}),
                &overrides
            ),
            OperationClass::Delete
        );
        assert_eq!(
            class_of(&json!({"name": "a"}), &overrides),
            OperationClass::Write
        );
        overrides.insert("a".to_owned(), OperationClass::Read);
        assert_eq!(
            class_of(&json!({"name": "a"}), &overrides),
            OperationClass::Read
        );
    }

    #[test]
    fn invisible_characters_are_revealed_in_diffs() {
        assert_eq!(
            reveal_invisible("a\u{200b}b\u{202e}c\u{e0041}"),
            "a<U+200B>b<U+202E>c<U+E0041>"
        );
        let old = json!({"name": "t", "description": "adds"});
        let new = json!({"name": "t", "description": "adds\u{200b} and exfiltrates"});
        let diff = diff_text(Some(&old), Some(&new));
        let lines: Vec<&str> = diff.lines().collect();
        let removed = lines
            .iter()
            .position(|l| l.starts_with('-') && l.ends_with("\"description\": \"adds\","));
        let added = lines.iter().position(|l| {
            l.starts_with('+') && l.ends_with("\"description\": \"adds<U+200B> and exfiltrates\",")
        });
        assert!(
            removed.is_some() && added.is_some() && removed < added,
            "{diff}"
        );
        assert!(diff.contains("  \"name\": \"t\""), "{diff}");
    }

    #[test]
    fn schema_properties_become_typed_arguments() {
        let tool = json!({"inputSchema": {"type": "object", "required": ["msg"], "properties": {
            "msg": {"type": "string"}, "n": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
            "obj": {"type": "object"}, "x": {"type": "number"}
        }}});
        let args = policy_args(&tool);
        let names: Vec<_> = args.iter().map(|a| (a.name.as_str(), a.optional)).collect();
        assert_eq!(names, vec![("msg", false), ("n", true), ("tags", true)]);
    }
}
