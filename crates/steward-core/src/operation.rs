//! Operation names (`service:operation`) and their read/write/delete class.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whether an operation reads, writes or deletes. Policies group actions by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationClass {
    /// Reads data; GET/HEAD, or an MCP tool with `readOnlyHint`.
    Read,
    /// Creates or changes data.
    Write,
    /// Deletes data; DELETE, or an MCP tool with `destructiveHint`.
    Delete,
}

impl OperationClass {
    /// The lowercase name used in policies: `read`, `write` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
        }
    }

    /// The class an HTTP method implies.
    pub fn from_http_method(method: &str) -> Self {
        match method.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" | "OPTIONS" => Self::Read,
            "DELETE" => Self::Delete,
            _ => Self::Write,
        }
    }
}

impl fmt::Display for OperationClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperationClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "delete" => Ok(Self::Delete),
            other => Err(format!("unknown operation class `{other}`")),
        }
    }
}

/// A fully qualified operation, written `service:operation` (e.g. `github:issues.create`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OperationName {
    /// The service name, e.g. `github`.
    pub service: String,
    /// The operation within the service, e.g. `issues.create`.
    pub operation: String,
}

impl OperationName {
    /// Builds an operation name from its parts.
    pub fn new(service: impl Into<String>, operation: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            operation: operation.into(),
        }
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.operation)
    }
}

impl FromStr for OperationName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((svc, op)) if !svc.is_empty() && !op.is_empty() => Ok(Self::new(svc, op)),
            _ => Err(format!(
                "operation `{s}` is not of the form `service:operation`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_round_trip() {
        let op: OperationName = "github:issues.create".parse().unwrap();
        assert_eq!(op.service, "github");
        assert_eq!(op.to_string(), "github:issues.create");
        assert!("nocolon".parse::<OperationName>().is_err());
        assert!(":x".parse::<OperationName>().is_err());
    }

    #[test]
    fn http_methods_map_to_classes() {
        assert_eq!(
            OperationClass::from_http_method("get"),
            OperationClass::Read
        );
        assert_eq!(
            OperationClass::from_http_method("PATCH"),
            OperationClass::Write
        );
        assert_eq!(
            OperationClass::from_http_method("DELETE"),
            OperationClass::Delete
        );
    }
}
