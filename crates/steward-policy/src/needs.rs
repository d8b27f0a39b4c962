//! Which parts of the request a group of policies can observe, so `authorize` builds only those.
//!
//! Building Cedar's inputs costs more than evaluating a small slice (a `datetime` literal alone
//! takes microseconds to parse), so each slice records what its policies' conditions read:
//! - `principal` (any use of the variable): the principal entity with attributes and tags;
//! - `action` (any use in a condition): the action entity and its groups;
//! - each top-level `context` attribute read with `.` or `has`; any other use of `context`
//!   (e.g. comparing whole records) marks every attribute.
//!
//! The analysis walks each policy's JSON form and errs on the side of "needed". Leaving out an
//! attribute no policy in the slice reads cannot change a decision; the sliced-versus-full-scan
//! proptest checks it. In sliced copies the action scope is also dropped (the slice already
//! guarantees it holds), so scopes never need the action entities.

use serde_json::Value;

/// Top-level context attributes, in bit order.
pub(crate) const CONTEXT_ATTRS: [&str; 8] = [
    "args",
    "time",
    "now",
    "now_ms",
    "source_ip",
    "rate",
    "risk_score",
    "delegated",
];

/// What a set of policies can observe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    pub(crate) principal: bool,
    pub(crate) action: bool,
    /// Bit i set: `CONTEXT_ATTRS[i]` is read.
    pub(crate) context: u8,
}

impl Needs {
    /// Everything (the full scan, or a policy the analysis cannot read).
    pub(crate) const ALL: Self = Self {
        principal: true,
        action: true,
        context: u8::MAX,
    };

    /// Union of two needs.
    pub(crate) fn union(self, other: Self) -> Self {
        Self {
            principal: self.principal || other.principal,
            action: self.action || other.action,
            context: self.context | other.context,
        }
    }

    /// Whether the context attribute `name` is needed.
    pub(crate) fn context_attr(self, name: &str) -> bool {
        CONTEXT_ATTRS
            .iter()
            .position(|a| *a == name)
            .is_none_or(|i| self.context & (1 << i) != 0)
    }

    /// The needs of one policy's conditions, given its JSON (EST) form.
    pub(crate) fn of_policy_json(policy: &Value) -> Self {
        let mut needs = Self::default();
        match policy.get("conditions") {
            Some(conditions) => walk(conditions, &mut needs),
            None => return Self::ALL,
        }
        needs
    }
}

fn is_var(v: &Value, name: &str) -> bool {
    v.as_object()
        .is_some_and(|m| m.len() == 1 && m.get("Var").and_then(Value::as_str) == Some(name))
}

fn walk(v: &Value, needs: &mut Needs) {
    match v {
        Value::Object(map) => {
            if let Some(var) = map.get("Var").and_then(Value::as_str) {
                match var {
                    "principal" => needs.principal = true,
                    "action" => needs.action = true,
                    "context" => needs.context = u8::MAX,
                    _ => {}
                }
            }
            for (key, child) in map {
                if key == "." || key == "has" {
                    let left = child.get("left");
                    let attr = child.get("attr").and_then(Value::as_str);
                    if let (Some(left), Some(attr)) = (left, attr)
                        && is_var(left, "context")
                    {
                        needs.context |= match CONTEXT_ATTRS.iter().position(|a| *a == attr) {
                            Some(i) => 1 << i,
                            None => u8::MAX,
                        };
                        continue;
                    }
                }
                walk(child, needs);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, needs)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(text: &str) -> Needs {
        let policy = cedar_policy::Policy::parse(None, text).unwrap();
        Needs::of_policy_json(&policy.to_json().unwrap())
    }

    #[test]
    fn reads_of_context_principal_and_action_are_found() {
        let n =
            needs(r#"permit (principal == Identity::"a", action in Action::"read", resource);"#);
        assert_eq!(n, Needs::default());
        let n = needs(
            r#"permit (principal, action, resource) when { context.now < datetime("2026-01-01") && context has source_ip };"#,
        );
        assert!(n.context_attr("now") && n.context_attr("source_ip") && !n.context_attr("args"));
        assert!(!n.principal && !n.action);
        let n = needs(
            r#"permit (principal, action, resource) when { principal.hasTag("x") || action in Action::"read" };"#,
        );
        assert!(n.principal && n.action && n.context == 0);
        let n = needs(r#"permit (principal, action, resource) when { context == context };"#);
        assert_eq!(n.context, u8::MAX);
        let n = needs(
            r#"permit (principal, action, resource) when { context["rate"].op_per_day > 1 };"#,
        );
        assert!(n.context_attr("rate") && !n.context_attr("time"));
    }
}
