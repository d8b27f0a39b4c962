//! The catalog of services, operations and argument types, and the Cedar schema generated from it.
//!
//! Schema conventions (no namespace, so policies write `Identity`, `Action`, `Service` bare):
//! - principal `Identity::"<id>"` with attributes `kind: String`, `owner: String`,
//!   `risk_score: Long` and `labels`, a record holding every key the catalog lists in
//!   `identity_labels` as a required `String` (an identity without that label gets `""`), so
//!   `principal.labels.env == "prod"` validates without a `has` guard. Every label, declared or
//!   not, is also an entity tag: `principal.hasTag("quarantine")`,
//!   `principal.hasTag("team") && principal.getTag("team") == "ops"`;
//! - action `Action::"<service>:<operation>"`, a member of `Action::"<service>"` and of the
//!   class group `Action::"read"`, `Action::"write"` or `Action::"delete"`;
//! - resource `Service::"<service>"`;
//! - context (a closed record): `args` (typed per operation; optional arguments need
//!   `context.args has name`), `time {hour, minute, weekday (1 = Monday .. 7 = Sunday),
//!   date "YYYY-MM-DD"}` in the deployment time zone, `now: datetime` (UTC), `now_ms: Long`
//!   (milliseconds since the Unix epoch; cheaper than `now`, used by grants), `source_ip?: ipaddr`,
//!   `rate {op_per_minute, op_per_hour, op_per_day, service_per_minute, service_per_hour,
//!   service_per_day}`, `risk_score: Long` and `delegated: Bool`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward_core::{OperationClass, OperationName};

use crate::error::PolicyError;

/// The type of one operation argument, as policies see it in `context.args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgType {
    /// A Cedar `String`; JSON string.
    String,
    /// A Cedar `Long`; JSON integer.
    Long,
    /// A Cedar `Bool`; JSON boolean.
    Bool,
    /// A Cedar `decimal` (at most 4 fractional digits); JSON number or string such as `"12.50"`.
    Decimal,
    /// A Cedar `Set<String>`; JSON array of strings.
    SetOfString,
    /// A Cedar `Set<Long>`; JSON array of integers.
    SetOfLong,
    /// A Cedar `ipaddr`; JSON string such as `"10.0.0.1"` or `"10.0.0.0/8"`.
    Ipaddr,
    /// A Cedar `datetime`; JSON string such as `"2026-01-05T10:00:00Z"`.
    Datetime,
}

impl ArgType {
    /// The Cedar JSON-schema type of this argument.
    fn schema_json(self) -> Value {
        match self {
            Self::String => json!({"type": "String"}),
            Self::Long => json!({"type": "Long"}),
            Self::Bool => json!({"type": "Boolean"}),
            Self::Decimal => json!({"type": "Extension", "name": "decimal"}),
            Self::SetOfString => json!({"type": "Set", "element": {"type": "String"}}),
            Self::SetOfLong => json!({"type": "Set", "element": {"type": "Long"}}),
            Self::Ipaddr => json!({"type": "Extension", "name": "ipaddr"}),
            Self::Datetime => json!({"type": "Extension", "name": "datetime"}),
        }
    }
}

/// One declared argument of an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgDef {
    /// The argument's name, the attribute of `context.args`.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub arg_type: ArgType,
    /// Whether it may be absent (policies then need `context.args has name`).
    #[serde(default)]
    pub optional: bool,
}

/// One operation of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationDef {
    /// The operation's name within its service, e.g. `issues.create`.
    pub name: String,
    /// Whether it reads, writes or deletes.
    pub class: OperationClass,
    /// Its typed arguments.
    #[serde(default)]
    pub args: Vec<ArgDef>,
}

/// One upstream service and its operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// The service's name, e.g. `github`. Must not contain `:` nor be `read`, `write` or `delete`.
    pub name: String,
    /// Its operations.
    #[serde(default)]
    pub operations: Vec<OperationDef>,
}

/// Steward's catalog: what policies can name. The Cedar schema is generated from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Format version of the catalog file; currently 1.
    #[serde(default = "default_version")]
    pub version: u32,
    /// Label keys exposed as required `String` attributes of `principal.labels`.
    #[serde(default)]
    pub identity_labels: Vec<String>,
    /// The services.
    #[serde(default)]
    pub services: Vec<ServiceDef>,
}

fn default_version() -> u32 {
    1
}

/// Class group names, which no service may take.
const CLASS_GROUPS: [&str; 3] = ["read", "write", "delete"];

impl Catalog {
    /// Parses a catalog from YAML (or JSON, which is YAML).
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        let catalog: Self =
            serde_yaml_ng::from_str(text).map_err(|e| PolicyError::CatalogFile(e.to_string()))?;
        catalog.check()?;
        Ok(catalog)
    }

    /// Checks names: non-empty, unique, no `:` in service names, no reserved service names.
    pub fn check(&self) -> Result<(), PolicyError> {
        let bad = |m: String| Err(PolicyError::InvalidCatalog(m));
        if self.version != 1 {
            return bad(format!("unsupported catalog version `{}`", self.version));
        }
        let mut labels = BTreeSet::new();
        for label in &self.identity_labels {
            if label.is_empty() || !labels.insert(label.as_str()) {
                return bad(format!("empty or duplicate identity label `{label}`"));
            }
        }
        let mut services = BTreeSet::new();
        for service in &self.services {
            if service.name.is_empty() || service.name.contains(':') {
                return bad(format!(
                    "service name `{}` is empty or contains `:`",
                    service.name
                ));
            }
            if CLASS_GROUPS.contains(&service.name.as_str()) {
                return bad(format!("service name `{}` is reserved", service.name));
            }
            if !services.insert(service.name.as_str()) {
                return bad(format!("duplicate service `{}`", service.name));
            }
            let mut operations = BTreeSet::new();
            for operation in &service.operations {
                if operation.name.is_empty() || !operations.insert(operation.name.as_str()) {
                    return bad(format!(
                        "empty or duplicate operation `{}` in service `{}`",
                        operation.name, service.name
                    ));
                }
                let mut args = BTreeSet::new();
                for arg in &operation.args {
                    if arg.name.is_empty() || !args.insert(arg.name.as_str()) {
                        return bad(format!(
                            "empty or duplicate argument `{}` of `{}:{}`",
                            arg.name, service.name, operation.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every operation with its service, in catalog order.
    pub fn operations(&self) -> impl Iterator<Item = (&ServiceDef, &OperationDef)> {
        self.services
            .iter()
            .flat_map(|s| s.operations.iter().map(move |o| (s, o)))
    }

    /// Looks up one operation.
    pub fn operation(&self, name: &OperationName) -> Option<&OperationDef> {
        self.services
            .iter()
            .find(|s| s.name == name.service)?
            .operations
            .iter()
            .find(|o| o.name == name.operation)
    }

    /// The schema in Cedar's JSON schema format (see the module docs for the conventions).
    pub fn cedar_schema_json(&self) -> Result<Value, PolicyError> {
        self.check()?;
        let long = || json!({"type": "Long"});
        let string = || json!({"type": "String"});
        let labels: serde_json::Map<String, Value> = self
            .identity_labels
            .iter()
            .map(|k| (k.clone(), string()))
            .collect();
        let time = json!({"type": "Record", "attributes": {
            "hour": long(), "minute": long(), "weekday": long(), "date": string()
        }});
        let rate = json!({"type": "Record", "attributes": {
            "op_per_minute": long(), "op_per_hour": long(), "op_per_day": long(),
            "service_per_minute": long(), "service_per_hour": long(), "service_per_day": long()
        }});
        let mut actions = serde_json::Map::new();
        for class in CLASS_GROUPS {
            actions.insert(class.to_owned(), json!({}));
        }
        for service in &self.services {
            actions.insert(service.name.clone(), json!({}));
            for operation in &service.operations {
                let args: serde_json::Map<String, Value> = operation
                    .args
                    .iter()
                    .map(|a| {
                        let mut t = a.arg_type.schema_json();
                        if let Some(obj) = t.as_object_mut() {
                            obj.insert("required".into(), Value::Bool(!a.optional));
                        }
                        (a.name.clone(), t)
                    })
                    .collect();
                let context = json!({"type": "Record", "attributes": {
                    "args": {"type": "Record", "attributes": args},
                    "time": time,
                    "now": {"type": "Extension", "name": "datetime"},
                    "now_ms": long(),
                    "source_ip": {"type": "Extension", "name": "ipaddr", "required": false},
                    "rate": rate,
                    "risk_score": long(),
                    "delegated": {"type": "Boolean"},
                }});
                actions.insert(
                    format!("{}:{}", service.name, operation.name),
                    json!({
                        "memberOf": [{"id": service.name}, {"id": operation.class.as_str()}],
                        "appliesTo": {
                            "principalTypes": ["Identity"],
                            "resourceTypes": ["Service"],
                            "context": context,
                        }
                    }),
                );
            }
        }
        Ok(json!({"": {
            "entityTypes": {
                "Identity": {
                    "shape": {"type": "Record", "attributes": {
                        "kind": string(),
                        "owner": string(),
                        "risk_score": long(),
                        "labels": {"type": "Record", "attributes": labels},
                    }},
                    "tags": string(),
                },
                "Service": {},
            },
            "actions": actions,
        }}))
    }

    /// The generated Cedar schema.
    pub fn cedar_schema(&self) -> Result<cedar_policy::Schema, PolicyError> {
        cedar_policy::Schema::from_json_value(self.cedar_schema_json()?)
            .map_err(|e| PolicyError::Schema(e.to_string()))
    }

    /// The generated schema in Cedar's human-readable schema syntax, for `policy validate` output.
    pub fn cedar_schema_text(&self) -> Result<String, PolicyError> {
        cedar_policy::SchemaFragment::from_json_value(self.cedar_schema_json()?)
            .map_err(|e| PolicyError::Schema(e.to_string()))?
            .to_cedarschema()
            .map_err(|e| PolicyError::Schema(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Catalog {
        Catalog::from_yaml(
            r#"
identity_labels: [env]
services:
  - name: email
    operations:
      - name: send
        class: write
        args:
          - {name: to, type: string}
          - {name: cc, type: set_of_string, optional: true}
      - name: list
        class: read
"#,
        )
        .unwrap()
    }

    #[test]
    fn schema_is_accepted_by_cedar_and_has_groups() {
        let text = sample().cedar_schema_text().unwrap();
        assert!(text.contains("\"email:send\""), "{text}");
        assert!(text.contains("Identity"), "{text}");
        let schema = sample().cedar_schema().unwrap();
        let groups: Vec<String> = schema.action_groups().map(|g| g.to_string()).collect();
        assert!(groups.iter().any(|g| g.contains("\"write\"")), "{groups:?}");
        assert!(groups.iter().any(|g| g.contains("\"email\"")), "{groups:?}");
    }

    #[test]
    fn reserved_and_duplicate_names_are_rejected() {
        let mut c = sample();
        c.services[0].name = "read".into();
        assert!(c.check().is_err());
        let mut c = sample();
        c.services[0].name = "a:b".into();
        assert!(c.check().is_err());
        let mut c = sample();
        let op = c.services[0].operations[0].clone();
        c.services[0].operations.push(op);
        assert!(c.check().is_err());
        assert!(Catalog::from_yaml("services: [{name: x, bogus: 1}]").is_err());
    }
}
