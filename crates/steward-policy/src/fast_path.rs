//! The fast path: one concrete evaluation of a whole slice instead of Cedar's per-policy loop.
//!
//! Cedar's `Authorizer` rebuilds each policy's condition and runs the partial evaluator on
//! it. For a slice, `compile` instead builds one record expression `{"0": cond_0, "1": cond_1,
//! …}`, where `cond_i` is policy i's principal and resource scope, its `when` bodies and its
//! negated `unless` bodies joined with `&&` in Cedar's order (the action scope is already
//! guaranteed by slicing). `authorize` evaluates it once with `cedar_policy::eval_expression`.
//!
//! A record evaluates only if every field does, so the fast path reports exactly the policies
//! Cedar would find satisfied whenever no policy errors. On any error, or anything unexpected,
//! `authorize` falls back to Cedar's `Authorizer` on the same slice, which attributes errors
//! to policies. The sliced-versus-full-scan proptest compares the two.

use std::collections::HashMap;
use std::fmt::Write;
use std::str::FromStr;

use cedar_policy::{
    EvalResult, Expression, Policy, PrincipalConstraint, ResourceConstraint, eval_expression,
};
use serde_json::{Value, json};

use crate::request::CedarInputs;

/// A slice's combined condition and the policy ids behind its record keys.
#[derive(Debug)]
pub(crate) struct FastPath {
    expression: Expression,
    ids: Vec<String>,
}

impl FastPath {
    /// Builds the combined expression from each policy's condition text (see
    /// [`condition_text`]); `None` if any is missing (the slice then always takes Cedar's path).
    pub(crate) fn build<'a>(
        policies: impl Iterator<Item = &'a Policy>,
        conditions: &HashMap<String, Option<String>>,
    ) -> Option<Self> {
        let mut text = String::from("{");
        let mut ids = Vec::new();
        for (i, policy) in policies.enumerate() {
            let condition = conditions.get(&policy.id().to_string())?.as_ref()?;
            let _ = write!(text, "\"{i}\": ({condition}),");
            ids.push(policy.id().to_string());
        }
        text.push('}');
        let expression = Expression::from_str(&text).ok()?;
        Some(Self { expression, ids })
    }

    /// The ids of the satisfied policies, or `None` to fall back to Cedar's path.
    pub(crate) fn satisfied(&self, inputs: &CedarInputs) -> Option<Vec<&str>> {
        let result = eval_expression(&inputs.request, &inputs.entities, &self.expression).ok()?;
        let EvalResult::Record(record) = result else {
            return None;
        };
        if record.len() != self.ids.len() {
            return None;
        }
        let mut satisfied = Vec::new();
        for (key, value) in record.iter() {
            match value {
                EvalResult::Bool(true) => {
                    let index: usize = key.parse().ok()?;
                    satisfied.push(self.ids.get(index)?.as_str());
                }
                EvalResult::Bool(false) => {}
                _ => return None,
            }
        }
        Some(satisfied)
    }
}

/// A policy's condition without its action scope, as Cedar text; `None` if it cannot be
/// rendered.
pub(crate) fn condition_text(policy: &Policy, json: &Value) -> Option<String> {
    let mut parts = Vec::new();
    match policy.principal_constraint() {
        PrincipalConstraint::Any => {}
        PrincipalConstraint::Eq(u) => parts.push(format!("principal == {u}")),
        PrincipalConstraint::In(u) => parts.push(format!("principal in {u}")),
        PrincipalConstraint::Is(t) => parts.push(format!("principal is {t}")),
        PrincipalConstraint::IsIn(t, u) => parts.push(format!("principal is {t} in {u}")),
    }
    match policy.resource_constraint() {
        ResourceConstraint::Any => {}
        ResourceConstraint::Eq(u) => parts.push(format!("resource == {u}")),
        ResourceConstraint::In(u) => parts.push(format!("resource in {u}")),
        ResourceConstraint::Is(t) => parts.push(format!("resource is {t}")),
        ResourceConstraint::IsIn(t, u) => parts.push(format!("resource is {t} in {u}")),
    }
    for condition in json.get("conditions")?.as_array()? {
        let negate = match condition.get("kind")?.as_str()? {
            "when" => false,
            "unless" => true,
            _ => return None,
        };
        let body = condition.get("body")?;
        let text = body_text(body)?;
        parts.push(if negate {
            format!("!({text})")
        } else {
            format!("({text})")
        });
    }
    if parts.is_empty() {
        return Some("true".into());
    }
    Some(parts.join(" && "))
}

/// Renders one condition body through Cedar's own printer, via a scope-less policy.
fn body_text(body: &Value) -> Option<String> {
    let dummy = json!({
        "effect": "permit",
        "principal": {"op": "All"},
        "action": {"op": "All"},
        "resource": {"op": "All"},
        "conditions": [{"kind": "when", "body": body}],
    });
    let text = Policy::from_json(None, dummy).ok()?.to_cedar()?;
    let start = text.find("when")?;
    let open = start + text.get(start..)?.find('{')?;
    let close = text.rfind('}')?;
    text.get(open + 1..close).map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_render_scopes_and_negations() {
        let p = Policy::parse(
            None,
            r#"permit (principal == Identity::"a\"b", action, resource is Service) when { context.x == {a: 1} } unless { context.y };"#,
        )
        .unwrap();
        let text = condition_text(&p, &p.to_json().unwrap()).unwrap();
        assert!(
            text.starts_with(r#"principal == Identity::"a\"b" && resource is Service && ("#),
            "{text}"
        );
        assert!(text.ends_with("&& !(context.y)"), "{text}");
        assert!(Expression::from_str(&text).is_ok(), "{text}");
        let p = Policy::parse(None, "forbid (principal, action, resource);").unwrap();
        assert_eq!(condition_text(&p, &p.to_json().unwrap()).unwrap(), "true");
    }
}
